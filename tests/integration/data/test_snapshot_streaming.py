"""Streaming snapshots: parts, hash-based carving and sampling, bounded memory, v1 snapshots.

Against the real local S3 server. The memory test runs collect + clean in a child process whose address
space (RLIMIT_AS) is smaller than the source it reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sentiflow.data import clean_parts
from sentiflow.data.clean import clean_snapshot
from sentiflow.data.clean_parts import clean_snapshot_mapped
from sentiflow.data.collect import collect
from sentiflow.data.hashing import DigestSet, text_hashes
from sentiflow.data.manifest import sign_manifest, signature_uri
from sentiflow.data.snapshot import (
    SnapshotError,
    SnapshotWriter,
    iter_batches,
    read_manifest,
    read_snapshot,
    read_split,
)
from sentiflow.settings.components import DataSettings
from sentiflow.storage import ObjectStore

SMALL = DataSettings(part_rows=400, batch_rows=97, spool_mib=1)  # many parts, odd batch boundaries


def corpus(n: int, *, duplicates: int = 0, seed: int = 0) -> pd.DataFrame:
    """``n`` reviews (HTML, case, punctuation to clean), ``duplicates`` of them repeated later."""
    rng = np.random.default_rng(seed)
    words = np.array(["Great", "awful", "<br />film", "plot", "ACTING!", "don&#39;t", "boring", "gem"])
    texts = [f"Review {i}: " + " ".join(rng.choice(words, 12)) for i in range(n)]
    labels = rng.choice(["positive", "negative", "neutral"], n).tolist()
    for k in range(duplicates):  # copies of earlier texts (some differ only in case: equal once cleaned)
        j = int(rng.integers(0, n))
        texts.append(texts[j].upper() if k % 2 else texts[j])
        labels.append(labels[j])
    return pd.DataFrame({"review": texts, "sentiment": labels})


def write_shards(folder: Path, frame: pd.DataFrame, shards: int, fmt: str = "parquet") -> Path:
    folder.mkdir(parents=True)
    for index, chunk in enumerate(np.array_split(np.arange(len(frame)), shards)):
        part = frame.iloc[chunk]
        name = folder / f"train-{index:05d}-of-{shards:05d}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(name, index=False)
        elif fmt == "csv":
            part.to_csv(name, index=False)
        else:
            part.to_json(name, orient="records", lines=True)
    return folder


def frames_of(store: ObjectStore, uri: str) -> dict[str, pd.DataFrame]:
    return {k: v.reset_index(drop=True) for k, v in read_snapshot(store, uri)[1].items()}


def assert_same_rows(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert set(left) == set(right)
    for split in left:
        pd.testing.assert_frame_equal(left[split], right[split], check_dtype=False)


# --- many parts == one part ----------------------------------------------------------------------------
@pytest.mark.parametrize("exact_rows", [1_000_000, 0], ids=["exact", "fraction"])
def test_many_parts_give_the_same_rows_as_one(store: ObjectStore, tmp_path: Path, exact_rows: int) -> None:
    frame = corpus(3000, duplicates=300)
    one = write_shards(tmp_path / "one", frame, 1)
    many = write_shards(tmp_path / "many", frame, 7)
    jsonl = write_shards(tmp_path / "jsonl", frame, 3, "jsonl")
    whole = DataSettings(exact_rows=exact_rows)
    small = SMALL.model_copy(update={"exact_rows": exact_rows})
    kwargs = {"sample_size": 1500, "eval_sample_size": 300, "seed": 7}
    raw_one = collect(str(one), run_id=f"one-{exact_rows}", store=store, settings=whole, **kwargs)
    raw_many = collect(str(many), run_id=f"many-{exact_rows}", store=store, settings=small, **kwargs)
    raw_json = collect(str(jsonl), run_id=f"json-{exact_rows}", store=store, settings=small, **kwargs)
    assert len(read_manifest(store, raw_many).splits["train"].parts) > 2
    assert_same_rows(frames_of(store, raw_one), frames_of(store, raw_many))
    assert_same_rows(frames_of(store, raw_one), frames_of(store, raw_json))

    clean_one = frames_of(store, clean_snapshot(raw_one, store=store, settings=whole))
    clean_many = frames_of(store, clean_snapshot(raw_many, store=store, settings=small))
    mapped_uri = clean_snapshot_mapped(raw_many, run_id=f"mapped-{exact_rows}", store=store, settings=small)
    assert_same_rows(clean_one, clean_many)
    assert_same_rows(clean_one, frames_of(store, mapped_uri))
    mapped = read_manifest(store, mapped_uri)
    sequential = read_manifest(store, clean_snapshot(raw_many, store=store, settings=small))
    assert mapped.dropped == sequential.dropped
    assert mapped.dropped["train"]["duplicate_text"] > 0  # duplicates across parts were found
    for split, rows in clean_one.items():
        assert not rows["text"].duplicated().any(), split


def test_mapped_clean_steps_give_the_one_part_rows_and_merge_only_complete_parts(
    store: ObjectStore, tmp_path: Path
) -> None:
    """The DAG's clean tasks (``data_tasks.clean_mapped`` calls these) one by one, on many small parts."""
    source = write_shards(tmp_path / "src", corpus(2000, duplicates=400), 3)
    raw_one = collect(str(source), run_id="steps-one", store=store, settings=DataSettings())
    raw = collect(str(source), run_id="steps", store=store, settings=SMALL)
    plan = clean_parts.clean_plan(raw, store=store)
    assert len(plan) == sum(len(s.parts) for s in read_manifest(store, raw).splits.values()) > 3
    cleaned = [clean_parts.clean_part(raw, **task, store=store, settings=SMALL) for task in plan]
    repeats = clean_parts.find_repeats(cleaned, store=store)
    assert 0 < len(repeats) < len(plan)  # only parts holding copies of an earlier part's texts
    rewritten = [clean_parts.drop_repeats(**r, store=store, settings=SMALL) for r in repeats]
    with pytest.raises(SnapshotError, match="no result for raw part"):  # a mapped task's result missing
        clean_parts.merge_clean(raw, cleaned[1:], rewritten, store=store)
    uri = clean_parts.merge_clean(raw, cleaned, rewritten, store=store)
    one = frames_of(store, clean_snapshot(raw_one, store=store))
    assert_same_rows(one, frames_of(store, uri))
    assert len(read_manifest(store, uri).splits["train"].parts) > 1

    store.delete(rewritten[0]["part"]["uri"])  # a part lost before the merge: no manifest points at it
    store.delete(uri)
    with pytest.raises(SnapshotError, match="not in the store"):
        clean_parts.merge_clean(raw, cleaned, rewritten, store=store)
    assert not store.exists(uri)


def test_exact_mode_keeps_sizes_and_class_proportions(store: ObjectStore, tmp_path: Path) -> None:
    source = write_shards(tmp_path / "src", corpus(3000), 4)
    uri = collect(
        str(source), run_id="exact", sample_size=900, eval_sample_size=150, store=store, settings=SMALL
    )
    manifest = read_manifest(store, uri)
    assert manifest.rows() == {"train": 900, "validation": 150, "test": 150}
    assert manifest.source["sampling"] == "exact"


def test_fraction_mode_sizes_are_close_to_the_target(store: ObjectStore, tmp_path: Path) -> None:
    source = write_shards(tmp_path / "src", corpus(6000), 3)
    settings = SMALL.model_copy(update={"exact_rows": 0})
    uri = collect(
        str(source), run_id="fraction", sample_size=2000, eval_sample_size=400, store=store, settings=settings
    )
    manifest = read_manifest(store, uri)
    assert manifest.source["sampling"] == "fraction"
    for split, target in {"train": 2000, "validation": 400, "test": 400}.items():
        assert abs(manifest.rows()[split] - target) < 4 * target**0.5, (split, manifest.rows())


# --- hashing is deterministic ------------------------------------------------------------------------
def test_hashes_are_stable_keyed_and_layout_free() -> None:
    texts = pa.array(["a film", "another film", "a film"])
    first, again = text_hashes(texts, 42), text_hashes(texts.slice(1), 42)
    assert first.split_hash[0] == first.split_hash[2]  # copies of one text: one decision
    assert first.split_hash[1] == again.split_hash[0]  # independent of the batch it is in
    assert not np.array_equal(first.sample_hash, text_hashes(texts, 43).sample_hash)  # seed changes it
    key = (42).to_bytes(8, "little", signed=True)
    digest = hashlib.blake2b(b"a film", digest_size=16, key=key).digest()  # the published function
    assert int(first.split_hash[0]) == int.from_bytes(digest[:8], "big")


def test_carving_and_sampling_are_reproducible_and_keep_copies_together(
    store: ObjectStore, tmp_path: Path
) -> None:
    source = write_shards(tmp_path / "src", corpus(2000, duplicates=400), 2)
    settings = SMALL.model_copy(update={"exact_rows": 0})
    runs = [collect(str(source), run_id=f"det-{i}", seed=5, store=store, settings=settings) for i in range(2)]
    assert_same_rows(frames_of(store, runs[0]), frames_of(store, runs[1]))
    other = frames_of(store, collect(str(source), run_id="det-other", seed=6, store=store, settings=settings))
    assert not frames_of(store, runs[0])["test"].equals(other["test"])
    frames = frames_of(store, runs[0])
    owner: dict[str, str] = {}
    for split, rows in frames.items():
        for text in rows["text"]:
            assert owner.setdefault(text, split) == split, f"{text!r} is in {owner[text]} and {split}"


def test_digest_set_keeps_first_occurrences() -> None:
    seen = DigestSet()
    assert seen.first_seen(np.array([5, 3, 5, 7], dtype=np.uint64)).tolist() == [True, True, False, True]
    assert seen.first_seen(np.array([7, 8, 8, 1], dtype=np.uint64)).tolist() == [False, True, False, True]
    for _ in range(20):  # many levels, merged
        seen.add(np.random.default_rng(_).integers(10, 2**63, 1000, dtype=np.uint64))
    assert seen.contains(np.array([1, 3, 5, 8, 2], dtype=np.uint64)).tolist() == [True] * 4 + [False]
    assert len(seen) == 20_005 and seen.nbytes == 8 * 20_005


# --- interrupted writes -------------------------------------------------------------------------------
def test_interrupted_write_leaves_no_manifest(store: ObjectStore, tmp_path: Path, monkeypatch) -> None:
    source = write_shards(tmp_path / "src", corpus(3000), 2)
    good = collect(str(source), run_id="interrupt", store=store, settings=SMALL)
    assert store.exists(good)
    calls = {"n": 0}
    upload = ObjectStore.upload_fileobj

    def failing(self, uri, fileobj, content_type="application/octet-stream"):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("S3 went away mid-way")
        return upload(self, uri, fileobj, content_type)

    monkeypatch.setattr(ObjectStore, "upload_fileobj", failing)
    with pytest.raises(RuntimeError, match="mid-way"):
        collect(str(source), run_id="interrupt", store=store, settings=SMALL)
    assert calls["n"] == 3 and not store.exists(good)  # the old manifest went first; no new one
    with pytest.raises(SnapshotError, match="incomplete"):
        read_manifest(store, good)

    prefix = store.uri("datasets", "interrupt-writer", "raw")
    with pytest.raises(KeyError), SnapshotWriter(store, prefix, label_names=["a", "b"], settings=SMALL) as w:
        w.write("train", pd.DataFrame({"text": ["x"] * 900, "label": [0, 1] * 450}))
        raise KeyError("a bug after some parts were uploaded")
    assert store.list_keys(prefix.join("train/")) and not store.exists(prefix.join("manifest.json"))


# --- version 1 snapshots ------------------------------------------------------------------------------
def test_version_1_snapshot_still_reads_and_cleans(store: ObjectStore) -> None:
    prefix = store.uri("datasets", "v1-run", "raw")
    splits = {}
    for split in ("train", "validation", "test"):
        frame = pd.DataFrame({"text": [f"<b>Old</b> review {i}" for i in range(50)], "label": [0, 1] * 25})
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        uri = prefix.join(f"{split}.parquet")
        store.put_bytes(uri, buffer.getvalue())
        splits[split] = {
            "uri": str(uri),
            "rows": 50,
            "label_counts": {"negative": 25, "positive": 25},
            "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        }
    manifest = {
        "schema_version": 1,
        "kind": "raw",
        "created_at": "2026-01-01T00:00:00+00:00",
        "run_id": "v1-run",
        "source": {"source": "old"},
        "text_column": "text",
        "label_column": "label",
        "label_names": ["negative", "positive"],
        "splits": splits,
    }
    payload = json.dumps(manifest).encode()
    store.put_bytes(prefix.join("manifest.json"), payload)
    # signed by the pipeline's key, as an operator who trusts an old snapshot signs it (docs/deployment.md)
    store.put_bytes(signature_uri(str(prefix.join("manifest.json"))), str(sign_manifest(payload)).encode())
    old = read_manifest(store, str(prefix.join("manifest.json")))
    assert old.schema_version == 1 and len(old.splits["train"].parts) == 1
    assert read_split(store, old, "train")["text"].tolist()[:2] == [
        "<b>Old</b> review 0",
        "<b>Old</b> review 1",
    ]
    assert sum(b.num_rows for b in iter_batches(store, old, "test", batch_rows=7)) == 50
    clean = read_manifest(store, clean_snapshot(str(prefix.join("manifest.json")), store=store))
    assert clean.schema_version == 2 and clean.rows() == {"train": 50, "validation": 50, "test": 50}
    store.put_bytes(splits["train"]["uri"], b"changed")
    with pytest.raises(SnapshotError, match="sha256"):
        next(iter_batches(store, old, "train"))


# --- bounded memory --------------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import pyarrow as pa
    from sentiflow.settings.components import DataSettings
    from sentiflow.data.clean import clean_snapshot
    from sentiflow.data.collect import collect
    from sentiflow.data.snapshot import read_manifest
    from sentiflow.storage import ObjectStore

    def vm_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1])

    source, headroom_mib = sys.argv[1], int(sys.argv[2])
    pa.set_cpu_count(1)  # fewer threads: less address space reserved for stacks and arenas
    pa.set_io_thread_count(1)
    store = ObjectStore()
    store.client  # import boto3 before measuring the baseline
    baseline = vm_kib() * 1024
    limit = baseline + headroom_mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    settings = DataSettings(part_rows=50_000, batch_rows=5_000, spool_mib=8, exact_rows=0)
    raw = collect(source, run_id="rlimit", store=store, settings=settings)
    clean = clean_snapshot(raw, store=store, settings=settings)
    # the steps after clean read the same snapshot under the same limit: feedback merge, check sampling
    import pandas as pd
    from sentiflow.data.snapshot import iter_frames
    from sentiflow.feedback.dataset import merge_feedback_into_snapshot
    from sentiflow.release.checks import sample_cases_from
    feedback = pd.DataFrame({"text": ["a new review", "another one"], "predicted_label": ["0", "1"],
                             "correct": [True, True], "verified": [True, True],
                             "status": ["accepted", "accepted"], "reviewed_by": ["r", "r"]})
    merged = merge_feedback_into_snapshot(feedback, clean, run_id="rlimit", store=store, settings=settings)
    merged = merged.merged_manifest_uri
    manifest = read_manifest(store, clean)
    cases = sample_cases_from(lambda: iter_frames(store, manifest, "test", batch_rows=5_000),
                              manifest.label_names, 3, 42)
    print(json.dumps({"raw": read_manifest(store, raw).rows(), "clean": manifest.rows(),
                      "merged": read_manifest(store, merged).rows(), "cases": len(cases),
                      "limit_mib": limit / 2**20, "baseline_mib": baseline / 2**20}))
    """
)


@pytest.mark.slow
def test_source_larger_than_the_memory_limit_completes(store: ObjectStore, tmp_path: Path) -> None:
    """~570 MiB of text through collect + clean, then the feedback merge and the inference check's sampling
    over the clean snapshot, with 450 MiB of address space above the baseline.

    RLIMIT_AS counts address space, not resident memory (thread stacks, allocator arenas), so the child
    runs with one Arrow thread and one malloc arena; the old code held the whole text several times.
    """
    headroom_mib, rows, text_chars = 450, 300_000, 2_000
    rng = np.random.default_rng(1)
    vocabulary = np.array(["Great", "awful", "<br />film", "plot", "ACTING!", "boring", "gem", "ok"])
    pool = " ".join(rng.choice(vocabulary, 400_000))
    path = tmp_path / "big" / "train.parquet"
    path.parent.mkdir()
    schema = pa.schema([("text", pa.string()), ("label", pa.int64())])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, rows, 20_000):
            offsets = rng.integers(0, len(pool) - text_chars, 20_000)
            texts = [f"{start + i} {pool[o : o + text_chars]}" for i, o in enumerate(offsets)]
            writer.write_table(pa.table({"text": texts, "label": rng.integers(0, 2, 20_000)}, schema=schema))
    assert rows * text_chars > 1.2 * headroom_mib * 2**20  # the text alone does not fit the headroom
    env = {"ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path.parent), str(headroom_mib)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert sum(result["raw"].values()) == rows
    assert sum(result["clean"].values()) == rows  # distinct texts: nothing dropped
    assert result["merged"] == {**result["clean"], "train": result["clean"]["train"] + 2}
    assert result["cases"] == 6
