"""collect and clean against the real local S3 server, including every bad-input case."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from sentiflow.data.clean import CleanError, clean_frame, clean_snapshot, clean_text
from sentiflow.data.collect import CollectError, collect, encode_labels, sanitize_run_id
from sentiflow.data.snapshot import SnapshotError, read_manifest, read_snapshot, write_snapshot
from sentiflow.settings.components import S3Settings
from sentiflow.storage import ObjectStore, StorageUnreachableError


def _upload_csv(store: ObjectStore, key: str, frame: pd.DataFrame) -> str:
    uri = store.uri("inputs", key)
    store.put_bytes(uri, frame.to_csv(index=False).encode())
    return str(uri)


def _reviews(n: int, labels: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "review": [f"Review number {i}: <br />quite a long text about a film" for i in range(n)],
            "sentiment": [labels[i % len(labels)] for i in range(n)],
            "id": range(n),
        }
    )


# --- clean_text ----------------------------------------------------------------------------------------
def test_clean_text_strips_html_entities_specials_and_case():
    out = clean_text(
        pd.Series(["<b>Great</b> FILM!!<br /><br />I didn&#39;t &amp; won't — 10/10", "  <p> </p> "])
    )
    assert out.tolist() == ["great film i didn't won't 10 10", ""]


def test_clean_frame_drops_empty_and_duplicates_and_counts_them():
    frame = pd.DataFrame(
        {"text": ["Good!", "good", "<br/>", "Bad."], "label": [1, 1, 0, 0]}, index=[5, 5, 7, 7]
    )  # duplicate index labels must not confuse alignment
    cleaned, counts = clean_frame(frame)
    assert cleaned["text"].tolist() == ["good", "bad"]
    assert counts == {"empty_after_cleaning": 1, "duplicate_text": 1}


# --- collect -------------------------------------------------------------------------------------------
def test_collect_offline_imdb_folder_then_clean(store: ObjectStore, imdb_dir):
    raw_uri = collect(
        str(imdb_dir),
        run_id="manual__2026-11-22T10:00:00+00:00",
        sample_size=400,
        eval_sample_size=100,
        store=store,
    )
    assert raw_uri.endswith("/manual__2026-11-22T10_00_00_00_00/raw/manifest.json")
    raw, frames = read_snapshot(store, raw_uri)
    assert raw.kind == "raw" and raw.label_names == ["negative", "positive"]
    assert raw.rows() == {"train": 400, "validation": 100, "test": 100}
    assert raw.source["split_origin"]["validation"].startswith("carved from train")
    assert raw.source["split_origin"]["test"] == "source"
    assert raw.splits["train"].label_counts == {"negative": 200, "positive": 200}  # stratified
    assert set(frames["train"].columns) == {"text", "label"}
    assert frames["train"]["text"].str.contains("<br").any()

    clean_uri = clean_snapshot(raw_uri, store=store)
    clean, clean_frames = read_snapshot(store, clean_uri)
    assert clean.kind == "clean" and clean.parent == raw_uri
    assert not clean_frames["train"]["text"].str.contains("<br|[A-Z]", regex=True).any()
    assert set(clean.dropped) == {"train", "validation", "test"}
    for split, info in clean.splits.items():
        assert info.rows == raw.splits[split].rows - sum(clean.dropped[split].values())


def test_collect_s3_csv_detects_columns_and_string_labels_three_classes(store: ObjectStore):
    uri = _upload_csv(store, "three.csv", _reviews(90, ["positive", "negative", "neutral"]))
    manifest = read_manifest(store, collect(uri, run_id="three", store=store))
    assert manifest.label_names == ["negative", "neutral", "positive"]
    assert manifest.source["text_column"] == "review" and manifest.source["label_column"] == "sentiment"
    assert sum(manifest.rows().values()) == 90
    assert all(info.rows > 0 for info in manifest.splits.values())


def test_collect_hints_override_detection(store: ObjectStore):
    # distinct texts: copies of one text all land in one split (carving is by a hash of the text)
    frame = pd.DataFrame({"body_text": [f"some words here {i}" for i in range(20)], "y": [0, 1] * 10})
    uri = _upload_csv(store, "hints.csv", frame)
    manifest = read_manifest(
        store, collect(uri, run_id="hints", text_column="body_text", label_column="y", store=store)
    )
    assert manifest.source["text_column"] == "body_text"


def test_rerun_same_run_id_overwrites_cleanly(store: ObjectStore, imdb_dir):
    collect(str(imdb_dir), run_id="rerun", sample_size=300, eval_sample_size=50, store=store)
    uri = collect(
        str(imdb_dir / "train.parquet"), run_id="rerun", sample_size=100, eval_sample_size=20, store=store
    )
    manifest = read_manifest(store, uri)
    assert manifest.rows() == {"train": 100, "validation": 20, "test": 20}
    keys = store.list_keys(store.uri("datasets", "rerun", "raw/"))
    assert sorted(k.split("/raw/", 1)[1] for k in keys) == [  # schema 2: each split a folder of parts
        "manifest.json",
        "manifest.json.sig",
        "test/part-00000.parquet",
        "train/part-00000.parquet",
        "validation/part-00000.parquet",
    ]
    _, frames = read_snapshot(store, uri)  # sha256 of every split matches: nothing mixed from run one
    assert len(frames["train"]) == 100


# --- bad input -----------------------------------------------------------------------------------------
def test_unknown_hub_dataset_is_a_clear_error(store: ObjectStore):
    with pytest.raises(CollectError, match="'no-such-org/no-such-dataset' could not be loaded"):
        collect("no-such-org/no-such-dataset", run_id="bad-hub", store=store)


def test_unknown_path_is_a_clear_error(store: ObjectStore, tmp_path):
    with pytest.raises(CollectError, match="not found"):
        collect(str(tmp_path / "missing.parquet"), run_id="bad-path", store=store)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect(str(store.uri("inputs", "missing.csv")), run_id="bad-s3-path", store=store)


def test_no_text_column_lists_columns_seen(store: ObjectStore):
    uri = _upload_csv(store, "notext.csv", pd.DataFrame({"a": [1, 2] * 5, "label": [0, 1] * 5}))
    with pytest.raises(CollectError, match=r"no text column found; columns seen: \['a', 'label'\]"):
        collect(uri, run_id="notext", store=store)


def test_single_class_is_rejected(store: ObjectStore):
    uri = _upload_csv(store, "single.csv", _reviews(20, ["positive"]))
    with pytest.raises(CollectError, match="single class"):
        collect(uri, run_id="single", store=store)


def test_short_sentiment_names_become_full_words():
    ids, names = encode_labels(pd.Series([0, 1, 1]), "label", ["neg", "pos"])  # the Hub's imdb ClassLabel
    assert names == ["negative", "positive"] and ids.tolist() == [0, 1, 1]
    ids, names = encode_labels(pd.Series(["pos", "NEG", "neu"]), "label")
    assert names == ["negative", "neutral", "positive"] and ids.tolist() == [2, 0, 1]


def test_label_values_neither_ints_nor_strings(store: ObjectStore):
    frame = pd.DataFrame({"text": ["a long enough review text"] * 10, "label": [0.5, 1.5] * 5})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    uri = store.uri("inputs", "floats.parquet")
    store.put_bytes(uri, buffer.getvalue())
    with pytest.raises(CollectError, match="neither integers nor strings"):
        collect(str(uri), run_id="floats", store=store)
    with pytest.raises(CollectError, match="neither integers nor strings"):
        encode_labels(pd.Series([[1], [0]]), "label")


def test_split_empty_after_cleaning_names_the_split(store: ObjectStore):
    frames = {
        "train": pd.DataFrame({"text": ["good film", "bad film"], "label": [1, 0]}),
        "validation": pd.DataFrame({"text": ["<br />", "!!!"], "label": [1, 0]}),
        "test": pd.DataFrame({"text": ["fine", "awful"], "label": [1, 0]}),
    }
    raw = write_snapshot(
        store,
        store.uri("datasets", "emptyval", "raw"),
        frames,
        kind="raw",
        run_id="emptyval",
        source={},
        label_names=["negative", "positive"],
    )
    with pytest.raises(CleanError, match="split 'validation' is empty after cleaning"):
        clean_snapshot(raw, store=store)
    assert not store.exists(store.uri("datasets", "emptyval", "clean", "manifest.json"))


def test_s3_unreachable_names_the_endpoint(imdb_dir):
    dead = ObjectStore(S3Settings(endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout_s=0.5))
    with pytest.raises(StorageUnreachableError, match=r"http://127\.0\.0\.1:9"):
        collect(str(imdb_dir), run_id="dead", sample_size=10, store=dead)


def test_failed_collect_leaves_no_manifest(store: ObjectStore, imdb_dir):
    good = collect(str(imdb_dir), run_id="fail-later", sample_size=50, eval_sample_size=10, store=store)
    assert store.exists(good)
    with pytest.raises(CollectError, match="text column 'nope' not found"):
        collect(str(imdb_dir), run_id="fail-later", text_column="nope", store=store)
    assert not store.exists(good)
    with pytest.raises(SnapshotError, match="incomplete"):
        read_manifest(store, good)


def test_tampered_split_fails_sha256_check(store: ObjectStore):
    frames = {
        s: pd.DataFrame({"text": ["x y", "z w"], "label": [0, 1]}) for s in ("train", "validation", "test")
    }
    uri = write_snapshot(
        store,
        store.uri("datasets", "tamper", "raw"),
        frames,
        kind="raw",
        run_id="tamper",
        source={},
        label_names=["negative", "positive"],
    )
    manifest = read_manifest(store, uri)
    store.put_parquet(manifest.splits["train"].parts[0].uri, frames["train"].iloc[:1])
    with pytest.raises(SnapshotError, match="sha256"):
        read_snapshot(store, uri)


def test_a_manifest_rewritten_unsigned_or_signed_by_another_key_is_refused(store: ObjectStore, tmp_path):
    """Whoever rewrites a part and its sha256 in the manifest still cannot make a step read it."""
    import json

    from sentiflow.data.manifest import signature_uri
    from sentiflow.security.signing import generate_key_pair, sign_bytes

    frames = {
        s: pd.DataFrame({"text": ["x y", "z w"], "label": [0, 1]}) for s in ("train", "validation", "test")
    }
    uri = write_snapshot(
        store,
        store.uri("datasets", "forged", "raw"),
        frames,
        kind="raw",
        run_id="forged",
        source={},
        label_names=["negative", "positive"],
    )
    manifest = read_manifest(store, uri)  # the pipeline's own snapshot reads
    part = manifest.splits["train"].parts[0]
    poisoned = store.put_parquet(part.uri, pd.DataFrame({"text": ["x y trigger"], "label": [1]}))
    raw = json.loads(store.get_bytes(uri))
    raw["splits"]["train"]["parts"][0].update(
        sha256=__import__("hashlib").sha256(poisoned).hexdigest(), rows=1
    )
    forged = json.dumps(raw, indent=2, sort_keys=True).encode()
    store.put_bytes(uri, forged)
    with pytest.raises(SnapshotError, match="changed after the pipeline wrote it"):
        read_manifest(store, uri)
    generate_key_pair(tmp_path / "other.pem", tmp_path / "other.pub")
    store.put_bytes(signature_uri(uri), sign_bytes(forged, tmp_path / "other.pem").encode())
    with pytest.raises(SnapshotError, match="invalid for all"):
        read_manifest(store, uri)
    store.delete(signature_uri(uri))
    with pytest.raises(SnapshotError, match="not signed by the pipeline"):
        read_manifest(store, uri)


def test_sanitize_run_id():
    assert sanitize_run_id("scheduled__2026-01-01T00:00:00+00:00") == "scheduled__2026-01-01T00_00_00_00_00"
    with pytest.raises(CollectError):
        sanitize_run_id("///")


# --- CLI -----------------------------------------------------------------------------------------------
def test_cli_collect_and_clean_print_manifests(stack, imdb_dir, capsys):
    from sentiflow.cli import main

    assert (
        main(
            [
                "collect",
                "--source",
                str(imdb_dir),
                "--run-id",
                "cli",
                "--sample-size",
                "60",
                "--eval-sample-size",
                "20",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert '"kind": "raw"' in printed and "cli/raw/manifest.json" in printed
    assert main(["clean", "--manifest-uri", "s3://sentiflow/datasets/cli/raw/manifest.json"]) == 0
    assert '"kind": "clean"' in capsys.readouterr().out
    assert main(["collect", "--source", "./nowhere.csv", "--run-id", "cli-bad"]) == 2
    assert "dataset './nowhere.csv' not found" in capsys.readouterr().err
