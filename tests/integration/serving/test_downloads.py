"""A replica downloads each version once for all its workers, keeps a few, and still verifies what it loads.

Against the session's real MLflow + S3: a signed TF-IDF version, fetched by several forked processes (a
replica's gunicorn workers) racing at one barrier, is downloaded by exactly one of them; older versions are
pruned to ``keep``; a folder left half-written by a killed worker is never used; a cached copy changed on disk
is refused by the signature check like a tampered download.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from serving.model.downloads import ModelDownloads


@pytest.fixture(scope="module")
def version(stack) -> tuple[str, str, object]:
    from sentiflow import registry
    from sentiflow.settings.components import MLflowSettings
    from tests.devserver import register_tfidf_versions

    (number,) = register_tfidf_versions(1)
    name = MLflowSettings().registered_model_name
    mv = registry.mlflow_client().get_model_version(name, number)
    return f"models:/{name}/{number}", f"{name}-v{number}", mv


def _fetch(root: str, uri: str, key: str, counter: str, barrier, out) -> None:  # type: ignore[no-untyped-def]
    def count() -> None:
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")

    barrier.wait()
    out.put(str(ModelDownloads(Path(root), on_download=count).local_copy(uri, key)))


def test_racing_workers_download_a_version_once(version, tmp_path):
    uri, key, _ = version
    counter = tmp_path / "downloads.txt"
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_fetch, args=(str(tmp_path / "models"), uri, key, str(counter), barrier, out))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    paths = {out.get(timeout=120) for _ in procs}
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(counter.read_text().splitlines()) == 1  # one download; three waited and reused it
    (path,) = paths
    assert (Path(path) / "MLmodel").is_file()
    assert not [p for p in (tmp_path / "models").iterdir() if p.is_dir() and p.name.startswith(".")]


def test_the_most_recently_used_versions_stay(version, tmp_path):
    uri, key, _ = version
    downloads = ModelDownloads(tmp_path / "models", keep=2)
    first = downloads.local_copy(uri, f"{key}-a")
    second = downloads.local_copy(uri, f"{key}-b")
    os.utime(first, (1, 1))
    os.utime(second, (2, 2))
    assert downloads.local_copy(uri, f"{key}-a") == first  # used again: now the newest, no download
    third = downloads.local_copy(uri, f"{key}-c")
    assert first.is_dir() and third.is_dir()
    assert not second.exists()  # the least recently used went


def test_a_half_written_download_is_never_used(version, tmp_path):
    uri, key, _ = version
    root = tmp_path / "models"
    partial = root / f".{key}-killed"
    partial.mkdir(parents=True)
    (partial / "MLmodel").write_text("half")
    calls: list[int] = []
    path = ModelDownloads(root, on_download=lambda: calls.append(1)).local_copy(uri, key)
    assert calls == [1]
    assert not partial.exists()
    assert (path / "MLmodel").read_text() != "half"


def test_a_cached_copy_changed_on_disk_is_refused(version, tmp_path):
    from sentiflow.security.signing import SignatureError, load_for_serving
    from sentiflow.settings.server import ServerSettings

    uri, key, mv = version
    path = ModelDownloads(tmp_path / "models").local_copy(uri, key)
    keys = ServerSettings().signing_public_keys
    assert load_for_serving(uri, mv, path, keys) is not None
    pickled = path / "python_model.pkl"
    pickled.write_bytes(pickled.read_bytes() + b"\0")
    with pytest.raises(SignatureError, match=r"python_model\.pkl"):
        load_for_serving(uri, mv, path, keys)
