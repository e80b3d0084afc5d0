"""collect + clean at 200k, 1M and 5M rows: time and peak RSS, each point in a fresh process.

The corpus is the offline IMDb reviews (50k) repeated, each row made distinct by a numbered suffix, written
as local parquet shards (``train-00000-of-000NN.parquet``, 500k rows each). A private S3 (SeaweedFS, as
``tests/conftest.py`` starts it) receives the snapshots. Each point runs ``collect`` then ``clean_snapshot``
with the default settings in a child process and reports its wall time and its own peak RSS: ``VmHWM``
of ``/proc/self/status``, which starts afresh at ``exec`` (``getrusage``'s ``ru_maxrss`` does not: a child
inherits the parent's high-water mark at fork, so the corpus is also built in its own process). The S3
server is another process. The reference point runs an earlier
commit of the data steps (``REFERENCE_COMMIT``, from a ``git worktree``) on the same 200k-row source.

Run: .venv/bin/python benchmarks/data_scale.py [--rows 200000 1000000 5000000] [--reference-rows 200000]

``--tokenize ROWS`` measures instead the training side at ROWS (1M is the target): collect + clean in
one child, then in a fresh child ``load_training_data`` (the splits streamed into memory-mapped Arrow files)
and ``encode_dataset`` of train and validation with the offline MiniLM tokenizer (max_length 256) into an
on-disk cache, recorded as ``data_scale_tokenize``. Its ``peak_rss_mib`` (VmHWM) counts the pages of the
memory-mapped files the tokenizer touched (file-backed, reclaimable); ``peak_anon_mib`` (RssAnon, sampled
every 0.2 s) is the process' own memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

REPO = Path(__file__).resolve().parents[1]
IMDB = REPO.parent / "shared" / "data" / "imdb"
REFERENCE_COMMIT = "ccd81d3"
SHARD_ROWS = 500_000


def build_corpus(rows: int, folder: Path) -> Path:
    """``rows`` distinct reviews as parquet shards; IMDb text + `` (copy N)``, IMDb's label."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    base = pa.concat_tables([pq.read_table(IMDB / f"{s}.parquet") for s in ("train", "test")])
    texts = base.column("text").combine_chunks().cast(pa.string())
    labels = base.column("label").combine_chunks()
    shards = max(1, -(-rows // SHARD_ROWS))
    for shard in range(shards):
        start, stop = shard * SHARD_ROWS, min(rows, (shard + 1) * SHARD_ROWS)
        index = pa.array(np.arange(start, stop) % len(base))
        suffix = pc.binary_join_element_wise(
            " (copy ", pc.cast(pa.array(np.arange(start, stop)), pa.string()), ")", ""
        )
        table = pa.table(
            {"text": pc.binary_join_element_wise(texts.take(index), suffix, ""), "label": labels.take(index)}
        )
        pq.write_table(table, folder / f"train-{shard:05d}-of-{shards:05d}.parquet", compression="zstd")
    return folder


def peak_rss_mib() -> float:
    """This process' peak resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(source: str, run_id: str) -> None:
    """One point: collect + clean of ``source``; prints JSON with time and this process' peak RSS."""
    import sentiflow
    from sentiflow.data.clean import clean_snapshot
    from sentiflow.data.collect import collect
    from sentiflow.data.snapshot import read_manifest
    from sentiflow.storage import ObjectStore

    store = ObjectStore()
    started = time.perf_counter()
    raw = collect(source, run_id=run_id, store=store)
    collected = time.perf_counter()
    clean = clean_snapshot(raw, store=store)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": round(done - started, 2),
                "collect_s": round(collected - started, 2),
                "clean_s": round(done - collected, 2),
                "peak_rss_mib": peak_rss_mib(),
                "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "raw_rows": read_manifest(store, raw).rows(),
                "clean_rows": read_manifest(store, clean).rows(),
                "sentiflow": str(Path(sentiflow.__file__).parent),
            }
        )
    )


def tokenize_child(manifest_uri: str, model: str) -> None:
    """The tokenize point: training data + tokenized train and validation; prints JSON (time, memory)."""
    import threading

    from sentiflow.families.transformer.model import TransformerClassifier
    from sentiflow.families.transformer.training import encode_dataset
    from sentiflow.train.data import load_training_data

    def anon_mib() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
        return 0.0

    peak = {"anon": anon_mib()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak["anon"] = max(peak["anon"], anon_mib())

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    data = load_training_data(manifest_uri)
    loaded = time.perf_counter()
    classifier = TransformerClassifier.from_pretrained(model, data.label_names, max_length=256)
    with tempfile.TemporaryDirectory(prefix="data-scale-tokens-") as cache:
        tokens = {
            split: len(encode_dataset(classifier, getattr(data, split), Path(cache), split))
            for split in ("train", "validation")
        }
    done = time.perf_counter()
    stop.set()
    print(
        json.dumps(
            {
                "load_s": round(loaded - started, 2),
                "tokenize_s": round(done - loaded, 2),
                "tokenized_rows": tokens,
                "peak_rss_mib": peak_rss_mib(),
                "peak_anon_mib": round(max(peak["anon"], anon_mib()), 1),
            }
        )
    )


def tokenize_point(rows: int, work: Path, model: str) -> dict:
    """collect + clean of ``rows`` (one child), then the tokenize child on the clean snapshot."""
    from sentiflow.storage import ObjectStore

    source = work / f"corpus-{rows}"
    subprocess.run([sys.executable, __file__, "--build", str(rows), str(source)], check=True)
    run_id = f"bench-tokenize-{rows}"
    prepared = subprocess.run([sys.executable, __file__, "--child", str(source), run_id], capture_output=True)
    if prepared.returncode != 0:
        raise RuntimeError(f"collect + clean of {rows} rows failed:\n{prepared.stderr[-4000:]!r}")
    shutil.rmtree(source)
    store = ObjectStore()
    manifest_uri = str(store.uri("datasets", run_id, "clean", "manifest.json"))
    load_before = os.getloadavg()
    done = subprocess.run(
        [sys.executable, __file__, "--tokenize-child", manifest_uri, model], capture_output=True, text=True
    )
    store.delete_prefix(store.uri("datasets", run_id + "/"))
    if done.returncode != 0:
        raise RuntimeError(f"tokenize point {rows} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "rows": rows,
        **result,
        "model": Path(model).name,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def run_point(rows: int, source: Path, run_id: str, pythonpath: str | None = None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    load_before = os.getloadavg()
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(source), run_id], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"point {rows} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    from sentiflow.storage import ObjectStore

    store = ObjectStore()
    store.delete_prefix(store.uri("datasets", run_id + "/"))  # the next point needs the disk
    return {
        "rows": rows,
        "seconds": result["seconds"],
        "rows_per_s": round(rows / result["seconds"]),
        "peak_rss_mib": result["peak_rss_mib"],
        "ru_maxrss_mib": result["ru_maxrss_mib"],
        "collect_s": result["collect_s"],
        "clean_s": result["clean_s"],
        "raw_rows": result["raw_rows"],
        "clean_rows": result["clean_rows"],
        "code": result["sentiflow"],
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def goals(points: list[dict], old: dict | None) -> dict:
    """The issue's goals, each with whether this run met it."""
    by_rows = {p["rows"]: p for p in points}
    five_m = by_rows.get(5_000_000)
    at_200k = by_rows.get(200_000)
    return {
        "peak_rss_at_5m_max_mib": 2048,
        "peak_rss_at_5m_met": bool(five_m and five_m["peak_rss_mib"] <= 2048),
        "rows_per_s_at_200k_not_below_reference_met": bool(
            old and at_200k and at_200k["rows_per_s"] >= old["rows_per_s"]
        ),
    }


def reference_checkout(work: Path) -> Path:
    target = work / "reference"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(target), REFERENCE_COMMIT],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000, 5_000_000])
    parser.add_argument("--reference-rows", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--tokenize", type=int, default=None, metavar="ROWS", help="only the tokenize point")
    parser.add_argument("--model", default=str(REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2"))
    args = parser.parse_args()

    from sentiflow.localstack import stack as localstack

    work = args.work or Path(tempfile.mkdtemp(prefix="data-scale-"))
    stack = localstack.stack_on_free_ports(work / "stack")
    os.environ.update(localstack.client_env(stack))
    if args.tokenize:
        try:
            localstack.up(stack, ["s3"], with_airflow=False)
            point = tokenize_point(args.tokenize, work, args.model)
        finally:
            localstack.down(stack, ["s3"])
        md = (
            "Training data of a clean snapshot of distinct IMDb-derived rows (after collect + clean, "
            "default settings): the splits streamed into memory-mapped Arrow files, then train and "
            f"validation tokenized ({point['model']}, max_length 256) into an on-disk cache, in a fresh "
            "process. Peak RSS counts the memory-mapped pages read (reclaimable); peak anonymous memory is "
            "the process' own.\n\n"
            "| rows | load (s) | tokenize (s) | peak RSS (MiB) | peak anonymous (MiB) |\n"
            "| ---: | ---: | ---: | ---: | ---: |\n"
            f"| {point['rows']:,} | {point['load_s']:.1f} | {point['tokenize_s']:.1f} "
            f"| {point['peak_rss_mib']:,.0f} | {point['peak_anon_mib']:,.0f} |\n"
        )
        record("data_scale_tokenize", {"points": [point]}, md)
        print(json.dumps(point, indent=2))
        return 0
    reference = None
    try:
        localstack.up(stack, ["s3"], with_airflow=False)
        points, old = [], None
        for rows in sorted(set(args.rows) | {args.reference_rows}):
            source = work / f"corpus-{rows}"
            subprocess.run([sys.executable, __file__, "--build", str(rows), str(source)], check=True)
            if rows == args.reference_rows:
                reference = reference_checkout(work)
                old = run_point(rows, source, f"bench-old-{rows}", pythonpath=str(reference / "include"))
                print(json.dumps(old), flush=True)
            if rows in args.rows:
                points.append(run_point(rows, source, f"bench-{rows}"))
                print(json.dumps(points[-1]), flush=True)
            shutil.rmtree(source)
    finally:
        localstack.down(stack, ["s3"])
        if reference is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(reference)], cwd=REPO, check=False)
    first, last = points[0], points[-1]
    result = {
        "points": points,
        "reference_before_change": {**old, "commit": REFERENCE_COMMIT} if old else None,
        "goals": goals(points, old),
        "rss_growth_first_to_last": round(last["peak_rss_mib"] / first["peak_rss_mib"], 2),
        "seconds_per_row_ratio_last_vs_first": round(
            (last["seconds"] / last["rows"]) / (first["seconds"] / first["rows"]), 2
        ),
        "loadavg_note": "2 shared cores; loadavg_before/after per point (os.getloadavg)",
    }
    rows_md = "".join(
        f"| {p['rows']:,}{' (before)' if p is old else ''} | {p['seconds']:.1f} "
        f"| {p['collect_s']:.1f} / {p['clean_s']:.1f} | {p['rows_per_s']:,} | {p['peak_rss_mib']:,.0f} "
        f"| {p['loadavg_before'][0]:.1f} → {p['loadavg_after'][0]:.1f} |\n"
        for p in ([old] if old else []) + points
    )
    md = (
        "collect + clean of distinct IMDb-derived rows (local parquet shards) into a private local S3, each "
        "point in a fresh process, default settings. The first row is the reference commit "
        f"({REFERENCE_COMMIT}).\n\n"
        "| rows | seconds | collect / clean (s) | rows/s | peak RSS (MiB) | load (1 min) before → after |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: |\n" + rows_md
    )
    record("data_scale", result, md)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--build":
        build_corpus(int(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--tokenize-child":
        tokenize_child(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
