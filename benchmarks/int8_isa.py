"""Does the shipped int8 file serve on a CPU without AVX-512? A replica's load and answers on AVX2 only.

The pipeline builds and checks a version's int8 file on the machine that trains it, which may have AVX-512
and VNNI. A replica on another CPU opens the same file with the kernels ONNX Runtime picks for that CPU:
without VNNI its u8 x s8 products go through AVX2's ``VPMADDUBSW``, which adds pairs of products into 16
bits with saturation, so answers may move. This runs a replica's load path (``to_runtime``: open the
shipped file, check it on the check texts, serve it or refuse it with a reason) and then answers test
texts, in a child process on this CPU and in one under QEMU user-mode emulation with a CPU model that has
AVX2 and FMA but no AVX-512 (``-cpu Haswell``; QEMU emulates the instructions exactly, saturation included,
only slowly). Both are compared with PyTorch's answers computed here. The models are ``int8_accuracy``'s
fine-tuned ones (its cache under ``benchmarks/.cache``; it trains them when missing).

    .venv/bin/python benchmarks/int8_isa.py    (qemu-user comes from scripts/system_deps.sh)
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import int8_cpu_flags, record
from int8_accuracy import DATASETS, fine_tuned

#: The emulated CPU: AVX2 and FMA, no AVX-512 (QEMU's model of Intel's Haswell).
EMULATED_CPU = "Haswell"


def child(folder: Path, texts_file: Path, out: Path) -> None:
    """A replica's load of the version in ``folder``, then its answers to the texts; JSON to ``out``."""
    features = importlib.import_module("numpy._core._multiarray_umath").__cpu_features__  # CPUID as seen
    from sentiflow.families.transformer.model import TransformerClassifier
    from sentiflow.families.transformer.onnx_runtime import (
        OnnxClassifier,
        OnnxExportError,
        allowed_prob_diff,
        shipped_onnx_model,
        to_runtime,
    )

    labels = json.loads((folder / "labels.json").read_text())
    texts = json.loads(texts_file.read_text())
    seen = {k: bool(features.get(k)) for k in ("AVX2", "AVX512F", "AVX512VNNI")}
    started = time.perf_counter()
    classifier = TransformerClassifier.load(folder, labels)
    with tempfile.TemporaryDirectory() as cache:
        try:
            served = to_runtime(
                classifier,
                "onnx-int8",
                Path(cache),
                threads=1,
                max_prob_diff=allowed_prob_diff(),
            )
        except OnnxExportError as exc:
            # the file's own answers on this CPU all the same: what the replica declined to serve
            result: dict = {"serves_int8": False, "reason": str(exc)}
            shipped = shipped_onnx_model(classifier, "onnx-int8")
            assert shipped is not None, "the version ships no int8 file"
            served = OnnxClassifier(classifier, shipped, "onnx-int8", threads=1)
        else:
            result = {"serves_int8": True, "origin": getattr(served, "origin", None)}
        result["load_s"] = round(time.perf_counter() - started, 1)
        answers = served.predict_proba(texts)
    out.write_text(json.dumps({"cpu_features": seen, **result, "answers": answers.tolist()}))


def run_child(folder: Path, texts_file: Path, emulated: bool) -> dict:
    out = folder.parent / f"answers-{'emulated' if emulated else 'native'}.json"
    command = [sys.executable, __file__, "--child", str(folder), str(texts_file), str(out)]
    if emulated:
        command = ["qemu-x86_64", "-cpu", EMULATED_CPU, *command]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")
    result = json.loads(out.read_text())
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def compare(reference: np.ndarray, truth: np.ndarray, result: dict, allowed: float) -> dict:
    answers = np.asarray(result.pop("answers"))
    diff = np.abs(answers - reference).max(axis=1)
    return {
        **result,
        "max_prob_diff": round(float(diff.max()), 4),
        "share_over_allowed": round(float((diff > allowed).mean()), 4),
        "label_agreement": round(float((answers.argmax(1) == reference.argmax(1)).mean()), 4),
        "accuracy_change_pt": round(
            100 * float((answers.argmax(1) == truth).mean() - (reference.argmax(1) == truth).mean()), 2
        ),
    }


def score(name: str, args: argparse.Namespace, work: Path) -> dict:
    from sentiflow.families.transformer.onnx_runtime import allowed_prob_diff, ship_onnx_models

    classifier, test, info = fine_tuned(name, args)
    folder = work / name / "version"
    assert classifier.loaded_from is not None, "fine_tuned returns the classifier loaded from its folder"
    shutil.copytree(classifier.loaded_from, folder)
    (folder / "labels.json").write_text(json.dumps(info["labels"]))
    shipped = ship_onnx_models(classifier, folder)  # what the pipeline ships, checked on this CPU
    texts = test["text"].tolist()[: args.texts]
    truth = test["label"].to_numpy()[: args.texts]
    texts_file = work / name / "texts.json"
    texts_file.write_text(json.dumps(texts))
    reference = classifier.predict_proba(texts)
    allowed = allowed_prob_diff()
    runs = {
        cpu: compare(reference, truth, run_child(folder, texts_file, cpu != "native"), allowed)
        for cpu in ("native", EMULATED_CPU)
    }
    print(name, json.dumps(runs), flush=True)
    return {"shipped": shipped, "texts": len(texts), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--model", default=str(Path(__file__).resolve().parents[2] / "shared" / "models" / "all-MiniLM-L6-v2")
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--sst2-git", default="/work/.mirror/YJiangcm+SST-2-sentiment-analysis/repo")
    parser.add_argument("--tweeteval-git", default="/work/.mirror/cardiffnlp+tweeteval/repo")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--texts", type=int, default=100, help="test texts answered per CPU")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    qemu = subprocess.run(["qemu-x86_64", "--version"], capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: score(name, args, Path(tmp)) for name in args.datasets}
    flags = int8_cpu_flags()
    lines = [
        f"The int8 file each version ships (built and checked on this CPU: {', '.join(flags)}), loaded "
        f"and served as a replica does, here and under `qemu-x86_64 -cpu {EMULATED_CPU}` (AVX2 and FMA, no "
        f"AVX-512; {qemu.stdout.splitlines()[0]}). Answers on {args.texts} test texts per dataset against "
        "PyTorch's here (fp32): the file's own answers on each CPU. `serves int8`: whether a replica on "
        "that CPU serves the file (`to_runtime`), else PyTorch serves and the reason is shown.",
        "",
        "| dataset | CPU | serves int8 | file's max diff | over allowed | label agreement "
        "| accuracy change (pt) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        for cpu, r in result["runs"].items():
            lines.append(
                f"| {name} | {cpu} | {r['serves_int8']} | {r['max_prob_diff']} | {r['share_over_allowed']} "
                f"| {r['label_agreement']} | {r['accuracy_change_pt']} |"
            )
    lines += [""] + [
        f"- {name} on {cpu}, why PyTorch serves: {r['reason']}"
        for name, result in results.items()
        for cpu, r in result["runs"].items()
        if not r["serves_int8"]
    ]
    record(
        "int8_isa",
        {
            "cpu_flags": flags,
            "emulated_cpu": EMULATED_CPU,
            "qemu": qemu.stdout.splitlines()[0],
            "datasets": results,
        },
        "\n".join(lines),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
