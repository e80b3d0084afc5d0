"""Signed model versions: the pipeline signs the files it uploads, every replica verifies before it loads.

A replica loads a version with ``mlflow.pyfunc.load_model``, which unpickles the version's artifacts: whoever
can write those files (S3, or MLflow with a registry identity) runs code on every replica. So each version
carries a signature made with the pipeline's private key (OpenSSF ``model-signing``, key-based ECDSA, no
network: sigstore's keyless flow cannot work offline), and a replica verifies the downloaded folder against
its configured public keys (a list, for rotation) before anything in it is deserialized.

**Where the signature lives.** In the logged model's own folder, as ``SIGNATURE_FILE`` next to ``MLmodel``,
and excluded from what is signed (the manifest records that exclusion, so verification excludes exactly it). A
replica that downloads ``models:/<name>/<version>`` gets it with the files it covers, in one download; no tag
or second location can drift from the files. The signed ``MLmodel`` names the logged model's id
(``model_id``), which ``load_verified`` compares with the registry's version, so a signed folder copied
over another version (a replay) is refused too.

**What is signed is what is uploaded.** ``Model.log`` saves into its own temporary folder and uploads it
(``client.log_model_artifacts``) with no hook in between, and rewrites ``MLmodel`` after the flavor saved it;
signing a re-saved or re-downloaded copy would sign what S3 returned, not what the pipeline made. So
``sentiflow.security.signed_logging`` does ``Model.log``'s steps with MLflow's public client API: create
the logged model, ``mlflow.pyfunc.save_model`` into a folder we own, sign that folder, upload exactly it,
register it.
Residual risk: the pipeline's own process and key (a compromised trainer signs what it likes), and
``.git*`` paths, which ``model-signing`` never hashes (nothing in a pyfunc folder reads them).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiflow.security.credentials_check import PEM_MARKER

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

SIGNATURE_FILE = "sentiflow-model.sig"
REGISTERED_MODEL_META_FILE = "registered_model_meta"


class SignatureError(RuntimeError):
    """A version's signature is missing, invalid, or does not match its files; it is never loaded."""


@dataclass(frozen=True)
class VerifiedModel:
    """What ``load_verified`` returns: the loaded pyfunc, the key that verified it and how long that took."""

    pyfunc: Any
    key_index: int
    verify_ms: float


def _hashing_config() -> Any:
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE])


def _key_file(key: str | Path, folder: Path, index: int) -> Path:
    """A path for ``key``: itself when it is a path, else the PEM text written into ``folder``."""
    text = str(key)
    if PEM_MARKER not in text:
        return Path(text)
    path = folder / f"key-{index}.pem"
    path.write_text(text if text.endswith("\n") else text + "\n")
    path.chmod(0o600)
    return path


def sign_folder(folder: str | Path, private_key: str | Path) -> Path:
    """Sign every file of ``folder`` with ``private_key`` (a PEM path or PEM text); returns the signature.

    The signature is written to ``folder / SIGNATURE_FILE`` (replacing one already there, which is excluded
    from the signed set anyway).
    """
    from model_signing import signing

    folder = Path(folder)
    signature = folder / SIGNATURE_FILE
    signature.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        key_path = _key_file(private_key, Path(tmp), 0)
        config = signing.Config().use_elliptic_key_signer(private_key=key_path)
        config.set_hashing_config(_hashing_config()).sign(folder, signature)
    return signature


def verify_folder(folder: str | Path, public_keys: Sequence[str | Path], *, what: str = "") -> int:
    """Verify ``folder`` against its ``SIGNATURE_FILE`` with any of ``public_keys`` (paths or PEM text).

    Returns the index of the key that verified. ``SignatureError`` names the signature and says whether it
    is missing, made by none of the keys, or does not match the files (and which files).
    """
    from model_signing import verifying

    folder = Path(folder)
    label = f"{what} " if what else ""
    signature = folder / SIGNATURE_FILE
    if not public_keys:
        raise SignatureError(
            f"{label}cannot be verified: no public key configured (signature {SIGNATURE_FILE})"
        )
    if not signature.is_file():
        raise SignatureError(f"{label}has no signature: {SIGNATURE_FILE} missing in {folder}")
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, key in enumerate(public_keys):
            try:
                key_path = _key_file(key, Path(tmp), index)
                verifying.Config().use_elliptic_key_verifier(public_key=key_path).verify(folder, signature)
                return index
            except ValueError as exc:
                message = str(exc)
                if message.startswith("Signature mismatch"):  # the key is right, the files are not
                    raise SignatureError(
                        f"{label}signature {SIGNATURE_FILE} does not match the files: {_mismatch(message)}"
                    ) from exc
                problems.append(f"key {index}: {message}")
            except Exception as exc:  # unreadable bundle, wrong key type, malformed PEM
                problems.append(f"key {index}: {exc.__class__.__name__}: {exc}")
    raise SignatureError(
        f"{label}signature {SIGNATURE_FILE} is invalid for all {len(public_keys)} configured public key(s): "
        + "; ".join(problems)
    )


def _mismatch(message: str) -> str:
    """``model-signing``'s diff without the raw digests: which files differ, are extra or are missing."""
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", message)
    listed = re.findall(r"((?:Extra|Missing) files)[^:]*: ([^\"'\]\\]+)", message)
    parts = [f"{kind.lower()}: {names.strip()}" for kind, names in listed]
    if changed:
        parts.insert(0, "changed files: " + ", ".join(changed))
    return "; ".join(parts) or message


def _mlmodel_id(folder: Path) -> str | None:
    import yaml

    try:
        data = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, ValueError):
        return None
    return None if not isinstance(data, dict) else data.get("model_id") or data.get("model_uuid")


def download_version(model_uri: str, target: str | Path) -> Path:
    """Download ``model_uri`` (``models:/<name>/<version>``) into ``target``: files only, none deserialized.

    MLflow's client writes ``REGISTERED_MODEL_META_FILE`` (name and version, YAML) after a ``models:/``
    download; it is not an artifact of the version, so it is not signed. Removed, so a file of that name from
    the store can never count.
    """
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(target)))
    (local / REGISTERED_MODEL_META_FILE).unlink(missing_ok=True)
    return local


def load_verified(
    local: Path, public_keys: Sequence[str | Path], *, what: str, expected_model_id: str | None = None
) -> VerifiedModel:
    """Verify the downloaded folder ``local``, and only then load it with ``mlflow.pyfunc.load_model``: what
    is loaded is what was verified, never the store again.

    ``expected_model_id`` (the registry version's ``model_id``) must equal the signed ``MLmodel``'s, or a
    signed folder of another version copied over this one would pass.
    """
    import mlflow.pyfunc

    started = time.perf_counter()
    index = verify_folder(local, public_keys, what=what)
    if expected_model_id is not None:
        signed_id = _mlmodel_id(local)
        if signed_id != expected_model_id:
            raise SignatureError(
                f"{what}: signature {SIGNATURE_FILE} verifies, but for logged model {signed_id}, not "
                f"this version's {expected_model_id} (a signed folder copied over another version)"
            )
    verify_ms = (time.perf_counter() - started) * 1000
    return VerifiedModel(mlflow.pyfunc.load_model(str(local)), index, verify_ms)


def version_model_id(model_version: ModelVersion) -> str | None:
    """The logged model a registry version was made from: ``model_id``, else its ``models:/m-...`` source."""
    if model_version.model_id:
        return model_version.model_id
    source = model_version.source or ""
    rest = source.removeprefix("models:/")
    return rest if rest != source and rest.startswith("m-") and "/" not in rest else None


def load_for_serving(
    model_uri: str,
    model_version: ModelVersion,
    local_dir: Path,
    public_keys: Sequence[str] | None = None,
    *,
    allow_unsigned: bool | None = None,
) -> Any:
    """What a replica (and the gate) loads: the version ``model_uri`` (the registry's ``model_version``),
    already downloaded into ``local_dir`` (``download_version``), verified against
    ``SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS``; ``SignatureError`` keeps the old model serving and names the
    signature in the load error (``GET /replicas``).

    The caller owns ``local_dir``: a replica keeps its workers' one copy of each version
    (``serving.model.downloads``), the gate a temporary folder it removes once it has scored.

    With no key configured nothing is loaded (``SignatureError``), unless the development setting
    ``SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS`` (``allow_unsigned``) is on: then it loads unverified and says
    so in the log. Production refuses to start with that setting on, or without keys
    (``sentiflow.security.credentials_check``).
    """
    import mlflow.pyfunc

    from sentiflow.settings.server import ServerSettings

    keys = [
        k for k in (public_keys if public_keys is not None else ServerSettings().signing_public_keys) if k
    ]
    if not keys:
        if not (allow_unsigned if allow_unsigned is not None else ServerSettings().allow_unsigned_models):
            raise SignatureError(
                f"{model_uri} is not loaded: no public key configured to verify its signature "
                f"({SIGNATURE_FILE}). Set SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS, or, on a development "
                "machine only, SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS=true"
            )
        log.warning(
            "no SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS and SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS=true: "
            "loading %s WITHOUT verifying a signature",
            model_uri,
        )
        return mlflow.pyfunc.load_model(str(local_dir))
    verified = load_verified(
        local_dir, keys, what=model_uri, expected_model_id=version_model_id(model_version)
    )
    log.info(
        "%s: signature verified with public key %d in %.0f ms",
        model_uri,
        verified.key_index,
        verified.verify_ms,
    )
    return verified.pyfunc


def pem_bytes(key: str | Path) -> bytes:
    """A key given as PEM text or as the path of a PEM file, as bytes."""
    text = str(key)
    return (text if PEM_MARKER in text else Path(text).read_text()).encode()


def sign_bytes(payload: bytes, private_key: str | Path) -> str:
    """The base64 ECDSA-SHA256 signature of ``payload`` with ``private_key`` (PEM text or path): what signs
    statements smaller than a model folder (approvals, dataset manifests)."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(pem_bytes(private_key), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SignatureError("the signing key is not an elliptic-curve (ECDSA) private key")
    return base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def verify_bytes(payload: bytes, signature: str, public_keys: Sequence[str | Path], *, what: str) -> int:
    """The index of the first of ``public_keys`` that ``signature`` (``sign_bytes``) verifies ``payload``
    with; ``SignatureError`` naming ``what`` otherwise."""
    import base64

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError as exc:
        raise SignatureError(f"{what}'s signature is not base64: {exc}") from exc
    for index, key_text in enumerate(public_keys):
        key = serialization.load_pem_public_key(pem_bytes(key_text))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        try:
            key.verify(raw, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return index
    raise SignatureError(f"{what}'s signature is invalid for all {len(public_keys)} public key(s)")


def public_pem(private_key: str | Path) -> str:
    """The public half of ``private_key`` as PEM text."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem_bytes(private_key), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def write_private(path: Path, data: bytes) -> bool:
    """Create ``path`` with mode 0600 holding ``data``; False when it already exists (first writer wins)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return True


def generate_key_pair(private_path: Path, public_path: Path) -> None:
    """An ECDSA P-256 key pair as PEM files: the private one 0600, created only if absent."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if private_path.exists() and public_path.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if write_private(private_path, private_pem):
        public_path.write_text(public_pem(private_pem.decode()))
        public_path.chmod(0o644)
