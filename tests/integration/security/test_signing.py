"""Signed model versions: what the pipeline signs verifies, and nothing else does.

Unit tests on folders (any byte of any file, a missing signature, key rotation), then the real path: a version
logged by ``log_classifier`` with the stack's key, downloaded from the session's MLflow and verified before it
is loaded; the same version with one artifact overwritten in S3 is refused, and so is an unsigned one.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from sentiflow.security.signing import (
    SIGNATURE_FILE,
    SignatureError,
    VerifiedModel,
    download_version,
    generate_key_pair,
    load_verified,
    sign_folder,
    verify_folder,
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("keys")
    pairs = {}
    for name in ("old", "new", "stranger"):
        pairs[name] = (root / f"{name}.pem", root / f"{name}.pub")
        generate_key_pair(*pairs[name])
    return pairs


def _model(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\nmodel_id: m-1\n")
    (folder / "python_model.pkl").write_bytes(bytes(range(256)) * 8)
    (folder / "sub" / "weights.bin").write_bytes(b"\x00" * 4096)
    return folder


def test_a_signed_folder_verifies_and_the_private_key_is_private(tmp_path, keys):
    folder = _model(tmp_path / "m")
    private, public = keys["old"]
    assert private.stat().st_mode & 0o777 == 0o600
    signature = sign_folder(folder, private)
    assert signature == folder / SIGNATURE_FILE
    assert verify_folder(folder, [public]) == 0
    assert verify_folder(folder, [public.read_text()]) == 0  # a PEM text works as well as a path


def test_one_byte_changed_in_any_file_is_refused(tmp_path, keys):
    folder = _model(tmp_path / "m")
    sign_folder(folder, keys["old"][0])
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != SIGNATURE_FILE]
    assert len(files) == 3
    for path in files:
        original = path.read_bytes()
        path.write_bytes(bytes([original[0] ^ 1]) + original[1:])
        with pytest.raises(SignatureError, match=rf"signature {SIGNATURE_FILE} does not match") as caught:
            verify_folder(folder, [keys["old"][1]])
        assert path.relative_to(folder).as_posix() in str(caught.value)
        path.write_bytes(original)
    verify_folder(folder, [keys["old"][1]])


def test_an_added_file_is_refused(tmp_path, keys):
    folder = _model(tmp_path / "m")
    sign_folder(folder, keys["old"][0])
    (folder / "code").mkdir()
    (folder / "code" / "evil.py").write_text("import os; os.system('id')")
    with pytest.raises(SignatureError, match=r"extra files: code/evil\.py"):
        verify_folder(folder, [keys["old"][1]])


def test_a_missing_signature_is_refused(tmp_path, keys):
    folder = _model(tmp_path / "m")
    with pytest.raises(SignatureError, match=f"has no signature: {SIGNATURE_FILE} missing"):
        verify_folder(folder, [keys["old"][1]])


def test_a_signature_by_an_unknown_key_is_refused(tmp_path, keys):
    folder = _model(tmp_path / "m")
    sign_folder(folder, keys["stranger"][0])
    with pytest.raises(SignatureError, match=f"signature {SIGNATURE_FILE} is invalid for all 2"):
        verify_folder(folder, [keys["old"][1], keys["new"][1]])


def test_key_rotation_old_and_new_both_verify(tmp_path, keys):
    public = [keys["old"][1], keys["new"][1]]
    for index, name in enumerate(("old", "new")):
        folder = _model(tmp_path / name)
        sign_folder(folder, keys[name][0])
        assert verify_folder(folder, public) == index


# --- the real path: MLflow + S3 of the session's stack -----------------------------------------------------
@pytest.fixture(scope="module")
def registered(stack):
    """Two versions of a fresh registered model: one signed by ``log_classifier``, one logged unsigned."""
    import mlflow

    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings, SigningSettings
    from tests.devserver import NEG_TEXTS, POS_TEXTS, register_unfitted_version

    assert SigningSettings().key() is not None, "the stack's env carries the pipeline's signing key"
    name = f"signing-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(MLflowSettings().experiment_name)
    clf = TfidfClassifier.build(["negative", "positive"], C=4.0)
    clf.fit(NEG_TEXTS * 3 + POS_TEXTS * 3, [0] * 12 + [1] * 12)
    with mlflow.start_run():
        signed = log_classifier(clf, registered_model_name=name)
    import os

    saved = os.environ.get("SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME")
    os.environ["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"] = name
    try:
        unsigned = register_unfitted_version()  # plain mlflow.pyfunc.log_model: no signature
    finally:
        os.environ.pop("SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME")
        if saved is not None:
            os.environ["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"] = saved
    return {"name": name, "signed": str(signed.registered_model_version), "unsigned": unsigned}


def _public_keys() -> list[str]:
    from sentiflow.settings.server import ServerSettings

    return ServerSettings().signing_public_keys


def verify_and_load(uri: str, dst_dir: Path, expected_model_id: str | None = None) -> VerifiedModel:
    """A replica's path: download the version (deserializing nothing), verify it, then load it."""
    return load_verified(
        download_version(uri, dst_dir), _public_keys(), what=uri, expected_model_id=expected_model_id
    )


def _model_id(name: str, version: str) -> str:
    from sentiflow import registry
    from sentiflow.security.signing import version_model_id

    model_id = version_model_id(registry.mlflow_client().get_model_version(name, version))
    assert model_id is not None
    return model_id


def test_a_signed_version_verifies_before_it_loads(registered, tmp_path):
    name, version = registered["name"], registered["signed"]
    verified = verify_and_load(f"models:/{name}/{version}", tmp_path, _model_id(name, version))
    classifier = verified.pyfunc.unwrap_python_model().classifier
    assert list(classifier.label_names) == ["negative", "positive"]
    assert verified.verify_ms > 0


def test_an_unsigned_version_is_refused(registered, tmp_path):
    uri = f"models:/{registered['name']}/{registered['unsigned']}"
    with pytest.raises(SignatureError, match=f"{uri} has no signature"):
        verify_and_load(uri, tmp_path)


def test_an_artifact_overwritten_in_s3_is_refused(registered, store, tmp_path):
    """Overwrite the version's pickled python model in the bucket, as someone with S3 write access could."""
    from tests.tamper import tampered_version

    name, version = registered["name"], registered["signed"]
    with (
        tampered_version(name, version),
        pytest.raises(SignatureError, match=rf"signature {SIGNATURE_FILE} does not match.*python_model.pkl"),
    ):
        verify_and_load(f"models:/{name}/{version}", tmp_path / "a")
    verify_and_load(f"models:/{name}/{version}", tmp_path / "b")


def test_a_signed_folder_replayed_over_another_version_is_refused(registered, tmp_path):
    name, version = registered["name"], registered["signed"]
    with pytest.raises(SignatureError, match="copied over another version"):
        verify_and_load(f"models:/{name}/{version}", tmp_path, expected_model_id="m-other")
