"""Serve a fine-tuned transformer through ONNX Runtime instead of PyTorch, optionally int8-quantized.

Why: on a CPU the model server's cost is the encoder's forward pass. ONNX Runtime's fused CPU kernels
answer the same fp32 model about 1.4x faster than eager PyTorch, and dynamic int8 quantization of the
linear layers (weights int8 per output channel, activations quantized per batch) about 2x, with
probabilities close to PyTorch's but not equal (``benchmarks/RESULTS.md``, ``serve_load``). The registry
version stays the source of truth: the ONNX file is derived from it and checked against the PyTorch model
on real texts before it may serve (``check_agreement``).

Where the file comes from: the pipeline builds the server's default runtime once when it logs a version
(``ship_onnx_models``) into ``SHIPPED_DIR`` of the classifier's saved folder, so it is one more file of the
signed model folder and every replica verifies it with the rest (``sentiflow.signing``). A replica uses
that file (``shipped_onnx_model``); only for a version without one (logged before, or its build failed at
log time) does it build the file itself, cached per version under its own state folder. Why: every replica
has its own disk, and three replicas exporting and quantizing the same version at once on two cores made a
first move to a transformer version take 47 s to converge (``benchmarks/replica_convergence.py``).

Tokenisation (truncation rules, dynamic padding, length-sorted batches) is the ``TransformerClassifier``'s,
so both runtimes see identical token ids.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from sentiflow.modeling.base import TextClassifier
from sentiflow.modeling.transformer import TransformerClassifier
from sentiflow.names import FAMILY_TRANSFORMER
from sentiflow.server_settings import ServerSettings

log = logging.getLogger(__name__)

Runtime = Literal["torch", "onnx", "onnx-int8"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
#: The file of each ONNX runtime, the same in a replica's cache folder and in a version's ``SHIPPED_DIR``.
ONNX_FILE = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
#: The folder of a saved classifier that holds the ONNX files shipped with the version.
SHIPPED_DIR = "onnx"
INPUT_NAMES = ("input_ids", "attention_mask")


def _quiet_quantizer(record: logging.LogRecord) -> bool:
    """ORT's quantizer logs a line per tensor on the root logger at INFO; the server logs INFO."""
    return not (record.levelno < logging.WARNING and "onnxruntime" in record.pathname)


class OnnxExportError(RuntimeError):
    """The model could not be exported, optimized or quantized for ONNX Runtime."""


def _export(classifier: TransformerClassifier, target: Path) -> None:
    """TorchScript-based export with dynamic batch and sequence axes (eager attention: ORT fuses it)."""
    import torch

    model = classifier.model.to("cpu").eval()
    previous = getattr(model.config, "_attn_implementation", None)
    sample = classifier.tokenizer.pad(
        {"input_ids": classifier.encode(["an example review", "and a second, longer example review"])},
        return_tensors="pt",
    )
    inputs = {name: sample[name] for name in INPUT_NAMES}
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    try:
        if previous and previous != "eager":
            model.set_attn_implementation("eager")
        with torch.inference_mode():
            torch.onnx.export(
                model,
                (),
                str(target),
                kwargs=inputs,
                input_names=list(INPUT_NAMES),
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
    finally:
        if previous and previous != "eager":
            model.set_attn_implementation(previous)


def _optimize(source: Path, target: Path, config: Any) -> None:
    """ORT's transformer graph fusions (attention, skip-layer-norm, bias-GELU) for BERT-like encoders."""
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = config.model_type if config.model_type in ("bert", "roberta", "distilbert") else "bert"
    optimized = optimize_model(
        str(source),
        model_type=model_type,
        num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
        hidden_size=int(getattr(config, "hidden_size", 0) or 0),
    )
    optimized.save_model_to_file(str(target))


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    if _quiet_quantizer not in root.filters:
        root.addFilter(_quiet_quantizer)  # drops only records logged on the root logger itself

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        # one scale per output channel: on IMDb MiniLM 98.8% of labels agree with fp32 (per-tensor: 95%)
        per_channel=True,
        # fused ops (from the optimizer) have no shape-inferred output type; they are all float32
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def build_onnx_model(classifier: TransformerClassifier, directory: Path, runtime: Runtime) -> Path:
    """The ONNX file for ``runtime`` under ``directory``, built once (atomically) and then reused.

    Several gunicorn workers may load the same version at once: each builds in its own temporary folder
    and renames it into place; a loser of that race uses the winner's files.
    """
    if runtime not in ONNX_FILE:
        raise ValueError(f"runtime {runtime!r} has no ONNX file; use one of {sorted(ONNX_FILE)}")
    final = Path(directory) / ONNX_FILE[runtime]
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        fp32 = final.parent / ONNX_FILE["onnx"]
        if not fp32.exists():  # the int8 model quantizes the fp32 one; build that first if missing
            raw, fp32 = work / "raw.onnx", work / ONNX_FILE["onnx"]
            _export(classifier, raw)
            try:
                _optimize(raw, fp32, classifier.model.config)
            except Exception:  # an architecture the fusions do not know still runs unfused
                log.warning("ORT graph optimization failed; serving the unfused export", exc_info=True)
                shutil.copyfile(raw, fp32)
        built = fp32
        if runtime == "onnx-int8":
            built = work / ONNX_FILE["onnx-int8"]
            _quantize(fp32, built)
        os.replace(built, final)  # atomic: readers see no file or a whole one
    except OnnxExportError:
        raise
    except Exception as exc:
        raise OnnxExportError(f"cannot build the {runtime} model: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def shipped_runtimes() -> tuple[Runtime, ...]:
    """The runtimes a version ships: the server's default (``ServerSettings.runtime``), the one replicas load.

    Not fp32 ``onnx`` beside it: it is an intermediate of the int8 build (no extra time), but it is as large
    as the PyTorch weights, and every replica downloads and hashes every file of a version, whichever
    runtime it serves. A server set to ``onnx`` builds that file itself, as before.
    """
    default = ServerSettings.model_fields["runtime"].default
    return (default,) if default in ONNX_FILE else ()


def shipped_onnx_path(classifier_dir: Path, runtime: Runtime) -> Path:
    """Where a version's ONNX file for ``runtime`` lies in its saved classifier folder."""
    return Path(classifier_dir) / SHIPPED_DIR / ONNX_FILE[runtime]


def ship_onnx_models(classifier: TransformerClassifier, classifier_dir: Path) -> list[str]:
    """Build ``shipped_runtimes()`` into ``classifier_dir`` (before it is signed and logged); returns them.

    A failed build never fails the training run: it logs a warning and ships none (the replicas then build
    the file themselves, as for a version logged before this existed).
    """
    runtimes = shipped_runtimes()
    started = time.perf_counter()
    try:
        for runtime in runtimes:
            build_onnx_model(classifier, Path(classifier_dir) / SHIPPED_DIR, runtime)
    except Exception as exc:
        log.warning("the version ships no ONNX model (replicas will build it): %s", exc, exc_info=True)
        shutil.rmtree(Path(classifier_dir) / SHIPPED_DIR, ignore_errors=True)
        return []
    if runtimes:
        size = sum(shipped_onnx_path(classifier_dir, r).stat().st_size for r in runtimes) / 2**20
        log.info(
            "built %s for the version in %.1f s (%.1f MiB)",
            ", ".join(runtimes),
            time.perf_counter() - started,
            size,
        )
    return list(runtimes)


def shipped_onnx_model(classifier: TextClassifier, runtime: Runtime) -> Path | None:
    """The ONNX file the version shipped for ``runtime`` (covered by the version's signature), else None."""
    folder = getattr(classifier, "loaded_from", None)
    if folder is None or runtime not in ONNX_FILE:
        return None
    path = shipped_onnx_path(folder, runtime)
    return path if path.is_file() else None


class OnnxClassifier(TextClassifier):
    """``TransformerClassifier``'s tokenisation and batching, ONNX Runtime's forward pass."""

    family = FAMILY_TRANSFORMER

    def __init__(
        self, source: TransformerClassifier, model_path: Path, runtime: Runtime, threads: int
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between operators: the request threads need the same cores (measured: spinning
        # gained nothing here).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.runtime = runtime
        self.model_path = Path(model_path)
        self.source = source  # tokenisation and batching; its PyTorch model is not called
        self.label_names = list(source.label_names)
        self.batch_size = source.batch_size
        self._lock = threading.Lock()

    def predict_proba(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        def forward(batch_ids: list[list[int]]) -> np.ndarray:
            batch = self.source.tokenizer.pad({"input_ids": batch_ids}, return_tensors="np")
            logits = self.session.run(None, {name: batch[name].astype(np.int64) for name in INPUT_NAMES})[0]
            logits = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            return probs / probs.sum(axis=1, keepdims=True)

        with self._lock:
            return self.source.predict_sorted(texts, batch_size or self.batch_size, forward)


def check_agreement(
    reference: TextClassifier, candidate: TextClassifier, texts: Sequence[str], max_prob_diff: float
) -> float:
    """Largest absolute probability difference on ``texts``; raises when above ``max_prob_diff``."""
    diff = float(np.max(np.abs(reference.predict_proba(texts) - candidate.predict_proba(texts))))
    if not np.isfinite(diff) or diff > max_prob_diff:
        raise OnnxExportError(
            f"the ONNX model disagrees with the PyTorch model by {diff:.4f} in probability "
            f"(allowed {max_prob_diff}); not serving it"
        )
    return diff


def to_runtime(
    classifier: TextClassifier,
    runtime: Runtime,
    cache_dir: Path,
    *,
    threads: int,
    check_texts: Sequence[str],
    max_prob_diff: float,
) -> TextClassifier:
    """``classifier`` itself for ``torch`` or a non-transformer; else its checked ONNX Runtime twin.

    The twin runs the version's shipped file when it has one that this ONNX Runtime can open, else a file
    built here and cached in ``cache_dir``; either must pass ``check_agreement``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "torch" or not isinstance(classifier, TransformerClassifier):
        return classifier
    if classifier.device != "cpu":
        log.info("runtime %s applies to CPU serving; keeping PyTorch on %s", runtime, classifier.device)
        return classifier
    candidate: OnnxClassifier | None = None
    origin = "shipped with the version"
    shipped = shipped_onnx_model(classifier, runtime)
    if shipped is not None:
        try:
            candidate = OnnxClassifier(classifier, shipped, runtime, threads)
        except Exception as exc:  # e.g. made by a newer ONNX Runtime than this one
            log.warning("cannot open the version's shipped %s file (%s); building it here", runtime, exc)
    if candidate is None:
        origin = "built here"
        candidate = OnnxClassifier(
            classifier, build_onnx_model(classifier, cache_dir, runtime), runtime, threads
        )
    diff = check_agreement(classifier, candidate, check_texts, max_prob_diff)
    log.info(
        "serving through %s (%s, %s); largest probability difference on check texts %.5f",
        runtime,
        origin,
        candidate.model_path,
        diff,
    )
    return candidate
