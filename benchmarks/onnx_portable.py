"""The shipped int8 file, portable (plain export, quantized) against ORT's fusions saved into the file.

The model server ships the plain export's dynamic int8 quantization (standard ONNX operators only) and lets
the session fuse it when the file is opened (``ORT_ENABLE_ALL``). The alternative it replaced saved ORT's
transformer fusions (``Attention``, ``SkipLayerNormalization`` ..., then ``QAttention``) into the file, which
ties the file to the kernels of the machine and execution provider that built it. This measures whether the
portable file costs speed: both files, built from the same MiniLM, opened the way the server opens them, run
the same batches interleaved (median of ``--repeats``), and each is compared with PyTorch on the server's
check texts.

    .venv/bin/python benchmarks/onnx_portable.py [--layers 6] [--repeats 25] [--threads 2]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, record

MODEL = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "all-MiniLM-L6-v2"
REVIEW = "This film was a masterpiece: moving, funny and beautifully shot. I loved every minute of it. "
#: (texts, words repeated): a short single request, a batch of long reviews, a batch of short texts.
SHAPES = ((1, 1), (8, 4), (32, 1))


def _fused_int8(classifier, fp32: Path, target: Path) -> None:
    """What was shipped before: ORT's transformer optimizer saved into the file, then quantized."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    config = classifier.model.config
    fused = target.with_name("fused.onnx")
    optimize_model(
        str(fp32), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
    ).save_model_to_file(str(fused))
    quantize_dynamic(
        str(fused),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def main() -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from sentiflow.families.transformer.model import TransformerClassifier
    from sentiflow.families.transformer.onnx_runtime import (
        CHECK_TEXTS,
        INPUT_NAMES,
        OnnxClassifier,
        build_onnx_model,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    torch.manual_seed(0)
    clf = TransformerClassifier.from_pretrained(
        str(MODEL), ["neg", "pos"], max_length=args.max_length, num_hidden_layers=args.layers
    )
    with torch.no_grad():  # a confident head (an untrained one answers ~0.5 everywhere, where all agree)
        clf.model.classifier.weight.mul_(30)
    reference = clf.predict_proba(CHECK_TEXTS)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {"portable": build_onnx_model(clf, work / "portable", "onnx-int8")}
        fp32 = build_onnx_model(clf, work / "fp32", "onnx")
        files["fused_saved"] = work / "fused_int8.onnx"
        _fused_int8(clf, fp32, files["fused_saved"])
        sessions: dict[str, OnnxClassifier] = {}
        variants: dict[str, dict[str, Any]] = {}
        for name, path in files.items():
            nodes = onnx.load(str(path)).graph.node
            sessions[name] = OnnxClassifier(clf, path, "onnx-int8", args.threads)
            variants[name] = {
                "size_mib": round(path.stat().st_size / 2**20, 2),
                "operator_domains": dict(collections.Counter(n.domain or "ai.onnx" for n in nodes)),
                "max_prob_diff_vs_pytorch": round(
                    float(np.abs(sessions[name].predict_proba(CHECK_TEXTS) - reference).max()), 5
                ),
                "ms": {},
            }
        for texts, words in SHAPES:
            ids = clf.encode([REVIEW * words] * texts)
            batch = clf.tokenizer.pad({"input_ids": ids}, return_tensors="np")
            feed = {k: batch[k].astype(np.int64) for k in INPUT_NAMES}
            shape = f"{texts}x{batch['input_ids'].shape[1]}"
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for session in sessions.values():
                session.session.run(None, feed)  # warm-up
            for _ in range(args.repeats):
                for name, session in sessions.items():
                    started = time.perf_counter()
                    session.session.run(None, feed)
                    times[name].append(time.perf_counter() - started)
            for name in sessions:
                variants[name]["ms"][shape] = round(float(np.median(times[name])) * 1000, 2)

    isa = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "sse4", "fma", "vnni")))
    rows = [
        "| shape (texts x tokens) | portable (ms) | fused saved (ms) | portable / fused |",
        "| --- | ---: | ---: | ---: |",
    ]
    ratios = []
    for shape in variants["portable"]["ms"]:
        a, b = variants["portable"]["ms"][shape], variants["fused_saved"]["ms"][shape]
        ratios.append(a / b)
        rows.append(f"| {shape} | {a} | {b} | {a / b:.2f} |")
    markdown = (
        f"- onnxruntime {ort.__version__}, torch {torch.__version__}, CPU instruction sets: {' '.join(isa)}\n"
        f"- MiniLM ({args.layers} layers, confident random head), max_length {args.max_length}, "
        f"{args.threads} intra-op threads, median of {args.repeats} interleaved runs per shape\n\n"
        + "\n".join(rows)
        + "\n\nLargest probability difference from PyTorch on the server's check texts: portable "
        f"{variants['portable']['max_prob_diff_vs_pytorch']}, fused saved "
        f"{variants['fused_saved']['max_prob_diff_vs_pytorch']}. Operators: portable "
        f"{variants['portable']['operator_domains']}, fused saved "
        f"{variants['fused_saved']['operator_domains']}."
    )
    result = {
        "onnxruntime": ort.__version__,
        "cpu_instruction_sets": isa,
        "layers": args.layers,
        "max_length": args.max_length,
        "threads": args.threads,
        "repeats": args.repeats,
        "variants": variants,
        "portable_over_fused_ratio": [round(r, 3) for r in ratios],
    }
    record("onnx_portable", result, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
