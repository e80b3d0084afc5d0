"""Serve a fine-tuned transformer through ONNX Runtime instead of PyTorch, optionally int8-quantized.

Why: on a CPU the model server's cost is the encoder's forward pass. ONNX Runtime's fused CPU kernels
answer the same fp32 model faster than eager PyTorch, and dynamic int8 quantization of the linear layers
(weights int8 per output channel, activations per token as they come) faster still, with probabilities
close to PyTorch's but not equal (``benchmarks/RESULTS.md``: ``serve_load``, ``int8_accuracy``). The registry
version stays the source of truth: the ONNX file is derived from it and checked against the PyTorch model
on real texts before it may serve (``check_agreement``).

What the file holds: the plain export (standard ONNX operators only) or its dynamic int8 quantization
(``MatMulInteger`` and the ``ReduceMin``/``ReduceMax``/``Round``/``Clip``/``Cast`` that quantize each
token's activations: standard operators too). No graph optimization is saved in it: ONNX Runtime
documents only its basic level as hardware-independent, and a graph saved after its extended or layout
levels, or ORT's transformer fusions (``Attention``, ``SkipLayerNormalization``, their ``QAttention`` once
quantized), holds contrib operators and kernels chosen for the machine and execution provider that saved it.
The hardware-specific fusions happen when a session opens the file (``ORT_ENABLE_ALL``, ``OnnxClassifier``),
on the machine that runs it; opened that way the plain file answers no slower than one saved fused
(``benchmarks/onnx_portable.py``).

Where the file comes from: the pipeline builds and verifies the server's default runtime once per version
(``ship_onnx_models``), into the model folder that is signed and that every replica verifies
(``sentiflow.security.signing``); replicas serve it as it is (``to_runtime``) and build a file themselves,
cached under their state folder, only for a version that ships none. Why: every replica has its own disk,
and replicas exporting and quantizing the same version at once on a small node make a first move to a
transformer version slow to converge (``benchmarks/replica_convergence.py``).

Tokenisation (truncation rules, dynamic padding, length-sorted batches) is the ``TransformerClassifier``'s,
so both runtimes see identical token ids.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from sentiflow.families.transformer.model import TransformerClassifier
from sentiflow.modeling.base import TextClassifier
from sentiflow.names import FAMILY_TRANSFORMER
from sentiflow.settings.cpu_quota import threads_per_worker
from sentiflow.settings.server import ServerSettings

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

Runtime = Literal["torch", "onnx", "onnx-int8"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
#: A session's graph optimization: ``basic`` is ONNX Runtime's hardware-independent level, ``all`` adds the
#: fusions and layouts chosen for this machine's CPU.
Optimization = Literal["basic", "all"]
OPTIMIZATION_LEVELS: tuple[Optimization, ...] = get_args(Optimization)
#: Where a served ONNX file came from: shipped with the version, or built by this replica.
Origin = Literal["shipped", "built"]
#: The file of each ONNX runtime, the same in a replica's cache folder and in a version's ``SHIPPED_DIR``.
ONNX_FILE = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
#: The folder of a saved classifier that holds the ONNX files shipped with the version.
SHIPPED_DIR = "onnx"
#: Appended to a runtime's file name: the version records there why the pipeline refused that file.
REFUSED = ".refused.json"
INPUT_NAMES = ("input_ids", "attention_mask")
#: Operator domains of a portable file: standard ONNX only (``""`` is the default domain's usual spelling).
PORTABLE_DOMAINS = ("", "ai.onnx")
#: Texts on which an ONNX model must agree with the PyTorch model, at log time and again on each replica
#: before it serves: short and long (past any max_length, so truncation is exercised), clear and mixed.
CHECK_TEXTS = (
    "A warm-up sentence to check the model answers.",
    "Short one.",
    "This film was a masterpiece: moving, funny and beautifully shot. I loved every minute of it.",
    "Dreadful. The plot made no sense, the acting was wooden and I walked out after an hour.",
    "Some good moments, some dull ones; the second half drags but the ending almost saves it.",
    " ".join(["The cast is great but the script is a mess and the pacing is slow."] * 60),
)


def _quiet_quantizer(record: logging.LogRecord) -> bool:
    """ORT's quantizer logs a line per tensor on the root logger at INFO; the server logs INFO."""
    return not (record.levelno < logging.WARNING and "onnxruntime" in record.pathname)


class OnnxExportError(RuntimeError):
    """The model could not be exported, optimized or quantized for ONNX Runtime."""


class OnnxDisagreementError(OnnxExportError):
    """The ONNX model runs, but its probabilities are further from the PyTorch model's than allowed."""


def _export(classifier: TransformerClassifier, target: Path) -> None:
    """TorchScript-based export with dynamic batch and sequence axes (eager attention: ORT fuses it), of
    the model as a replica loads it: fp32 on the CPU."""
    import torch

    with _on_cpu_in_fp32(classifier):
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


#: How the int8 file is quantized: which operator types become int8, and which nodes (by a part of their
#: name) stay fp32. ``benchmarks/int8_accuracy.py`` measures each choice against PyTorch. Only the linear
#: layers (``MatMul``): an int8 word-embedding table (``Gather``) shrinks the file but moves probabilities
#: further. The first block's feed-forward down-projection stays fp32: it reads GELU's output, whose
#: outliers move the answers most of any single layer, and it is one of 36.
QUANTIZED_OPS: tuple[str, ...] | None = ("MatMul",)  # None: every type ORT can quantize dynamically
FP32_NODES: tuple[str, ...] = ("/layer.0/output/dense/",)
#: One activation scale per token rather than one per tensor (``_per_token_activations``).
PER_TOKEN = True
#: Weights over 7 bits (-64..63) rather than 8: a CPU without VNNI multiplies uint8 by int8 in pairs summed
#: in int16, which saturates with full-range weights and activations near 255; with 7 bits it cannot.
REDUCE_RANGE = False


def quantize_int8(
    source: Path,
    target: Path,
    *,
    op_types: tuple[str, ...] | None = QUANTIZED_OPS,
    fp32_nodes: tuple[str, ...] = FP32_NODES,
    per_token: bool = PER_TOKEN,
    reduce_range: bool = REDUCE_RANGE,
) -> None:
    """Dynamic int8 quantization of the plain export: ``MatMulInteger`` fed by ``DynamicQuantizeLinear``, or
    by its per-token rewrite.

    ``op_types`` limits the operator types quantized; nodes whose name holds one of ``fp32_nodes`` (for
    example ``/classifier/``) stay fp32. ``per_token``: each token's activations get their own scale and
    zero point (``_per_token_activations``) instead of one for the whole batch. ``reduce_range``:
    weights over 7 bits (``REDUCE_RANGE``).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    if _quiet_quantizer not in root.filters:
        root.addFilter(_quiet_quantizer)  # drops only records logged on the root logger itself
    graph = onnx.load(str(source), load_external_data=False).graph
    excluded = [n.name for n in graph.node if any(part in n.name for part in fp32_nodes)]
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        # one scale per output channel (per tensor, labels agree with fp32 markedly less often)
        per_channel=True,
        reduce_range=reduce_range,
        op_types_to_quantize=list(op_types) if op_types is not None else None,
        nodes_to_exclude=excluded,
    )
    if per_token:
        quantized = onnx.load(str(target))
        _per_token_activations(quantized.graph)
        onnx.save(quantized, str(target))


def _per_token_activations(graph: onnx.GraphProto) -> None:
    """Rewrites each ``DynamicQuantizeLinear`` of ``quantize_dynamic``'s graph to quantize per token.

    Why: one uint8 scale for a whole batch is set by its largest activation; the few tokens with outsized
    activations (early blocks' feed-forward, for example) leave a handful of levels for every other token,
    and the errors add up through the blocks. Per token, each row of the activation matrix is quantized
    over its own range. Standard operators only: the row's scale and zero point come from ``ReduceMin`` /
    ``ReduceMax``; ``MatMulInteger`` then runs without an input zero point, and the zero point's share,
    ``scale * zero_point * (column sums of the int8 weights) * weight scale``, is subtracted after the
    output scale (a constant per weight, so it costs one ``Mul`` and one ``Sub`` per layer).
    """
    from onnx import TensorProto, helper, numpy_helper

    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    zero, levels = const("per_token/zero", np.array(0.0)), const("per_token/levels", np.array(255.0))
    tiny = const("per_token/tiny", np.array(np.finfo(np.float32).tiny))
    rewritten: list[onnx.NodeProto] = []
    after: dict[str, list[onnx.NodeProto]] = {}  # nodes to place right after the named node

    def op(kind: str, inputs: list[str], out: str, **attrs: Any) -> str:
        rewritten.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    for node in list(graph.node):
        if node.op_type != "DynamicQuantizeLinear":
            rewritten.append(node)
            rewritten.extend(after.pop(node.name, []))
            continue
        x, (q, scale, zp) = node.input[0], node.output
        p = f"{node.name}/per_token/"
        lo = op("Min", [op("ReduceMin", [x], p + "min", axes=[-1], keepdims=1), zero], p + "lo")
        hi = op("Max", [op("ReduceMax", [x], p + "max", axes=[-1], keepdims=1), zero], p + "hi")
        op("Max", [op("Div", [op("Sub", [hi, lo], p + "span"), levels], p + "step"), tiny], scale)
        zp_f = op("Round", [op("Div", [op("Neg", [lo], p + "neg_lo"), scale], p + "zp_raw")], p + "zp")
        shifted = op(
            "Add", [op("Round", [op("Div", [x, scale], p + "scaled")], p + "rounded"), zp_f], p + "shifted"
        )
        op("Cast", [op("Clip", [shifted, zero, levels], p + "clipped")], q, to=TensorProto.UINT8)
        scale_zp = op("Mul", [scale, zp_f], p + "scale_zp")
        for matmul in consumers.get(q, []):
            if matmul.op_type != "MatMulInteger" or consumers.get(zp, []) != consumers[q]:
                raise OnnxExportError(f"per-token activations: {q} feeds a {matmul.op_type}")
            weights = numpy_helper.to_array(inits[matmul.input[1]]).astype(np.int64)
            w_zp = numpy_helper.to_array(inits[matmul.input[3]]).astype(np.int64)
            matmul.input[2] = ""  # no input zero point: its share is subtracted below
            (cast,) = consumers[matmul.output[0]]
            (out_mul,) = consumers[cast.output[0]]  # cast * (scale * weight scale)
            (scales,) = [producer[i] for i in out_mul.input if i != cast.output[0]]
            (w_scale,) = [numpy_helper.to_array(inits[i]) for i in scales.input if i != scale]
            column_sums = (weights - w_zp).sum(axis=0)
            share = const(f"{matmul.name}/per_token/zp_weights", w_scale * column_sums)
            out = f"{matmul.name}/per_token/output"
            for reader in consumers.get(out_mul.output[0], []):
                reader.input[:] = [out if i == out_mul.output[0] else i for i in reader.input]
            m = f"{matmul.name}/per_token/"
            after[out_mul.name] = [
                helper.make_node("Mul", [scale_zp, share], [m + "zp_share"], name=m + "zp_share"),
                helper.make_node("Sub", [out_mul.output[0], m + "zp_share"], [out], name=out),
            ]
    del graph.node[:]
    graph.node.extend(rewritten)


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
        if not fp32.exists():  # the int8 model quantizes the fp32 export; export that first if missing
            fp32 = work / ONNX_FILE["onnx"]
            _export(classifier, fp32)
        built = fp32
        if runtime == "onnx-int8":
            built = work / ONNX_FILE["onnx-int8"]
            quantize_int8(fp32, built)
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


def allowed_prob_diff() -> float:
    """How far a shipped file's probabilities may be from PyTorch's at log time: the model server's default
    ``runtime_max_prob_diff``, so a file that passes here passes a replica's check with default settings."""
    return float(ServerSettings.model_fields["runtime_max_prob_diff"].default)


def shipped_onnx_path(classifier_dir: Path, runtime: Runtime, suffix: str = "") -> Path:
    """Where a version's ONNX file for ``runtime`` lies in its saved classifier folder; with ``REFUSED``,
    the record of why the pipeline refused that file (signed with the folder)."""
    return Path(classifier_dir) / SHIPPED_DIR / (ONNX_FILE[runtime] + suffix)


def shipped_onnx_model(classifier: TextClassifier, runtime: Runtime, suffix: str = "") -> Path | None:
    """The file the version shipped for ``runtime`` (covered by the version's signature), else None."""
    folder = getattr(classifier, "loaded_from", None)
    if folder is None or runtime not in ONNX_FILE:
        return None
    path = shipped_onnx_path(folder, runtime, suffix)
    return path if path.is_file() else None


def check_portable(path: Path) -> None:
    """Raises unless every operator of the file is a standard ONNX one (no ONNX Runtime contrib op)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise OnnxExportError(f"cannot read {Path(path).name} as an ONNX model: {exc}") from exc
    nodes = model.graph.node
    foreign = sorted({f"{n.domain}.{n.op_type}" for n in nodes if n.domain not in PORTABLE_DOMAINS})
    if foreign:
        raise OnnxExportError(
            f"{Path(path).name} is not portable: it holds ONNX Runtime-specific operators "
            f"({', '.join(foreign)})"
        )


@contextlib.contextmanager
def _on_cpu_in_fp32(classifier: TransformerClassifier) -> Iterator[TransformerClassifier]:
    """The classifier answering as a CPU replica's PyTorch does: on the CPU, weights and compute in fp32.

    A replica loads the saved folder in fp32; the trained model in memory may hold bf16 weights (mixed
    precision on a GPU, or on a CPU with native bf16), and an export of those holds bf16 ``MatMul``s that
    ONNX Runtime's CPU provider has no kernel for. The weights go back to their dtype afterwards.
    """
    import torch

    device, bf16 = classifier.device, classifier.bf16
    dtype = next(classifier.model.parameters()).dtype
    classifier.device, classifier.bf16 = "cpu", False
    if dtype != torch.float32:
        classifier.model.to(dtype=torch.float32)
    try:
        yield classifier
    finally:
        classifier.device, classifier.bf16 = device, bf16
        if dtype != torch.float32:
            classifier.model.to(dtype=dtype)


def verify_onnx_model(
    classifier: TransformerClassifier,
    path: Path,
    runtime: Runtime,
    *,
    max_prob_diff: float,
    texts: Sequence[str] = CHECK_TEXTS,
) -> float:
    """What a version's file must pass before it is signed; the largest probability difference, else raises.

    Standard operators only (``check_portable``); it opens in a fresh session at ONNX Runtime's
    hardware-independent level (``basic``) and at the server's (``all``, this machine's fusions); on
    ``texts`` each answers within ``max_prob_diff`` of the PyTorch model on CPU in fp32. Each failure raises
    ``OnnxExportError`` naming it.
    """
    import onnxruntime as ort

    check_portable(path)
    with _on_cpu_in_fp32(classifier):
        reference = classifier.predict_proba(texts)
    threads = threads_per_worker(1)
    worst = 0.0
    for level in OPTIMIZATION_LEVELS:
        try:
            candidate = OnnxClassifier(classifier, path, runtime, threads, optimization=level)
        except Exception as exc:
            raise OnnxExportError(
                f"ONNX Runtime {ort.__version__} cannot open {Path(path).name} with graph optimization "
                f"{level!r}: {exc}"
            ) from exc
        worst = max(worst, _agreement(reference, candidate.predict_proba(texts), max_prob_diff))
    return worst


def ship_onnx_models(
    classifier: TransformerClassifier, classifier_dir: Path, *, max_prob_diff: float | None = None
) -> list[str]:
    """Build ``shipped_runtimes()`` into ``classifier_dir`` (before it is signed and logged); returns the
    runtimes shipped.

    Each file is verified (``verify_onnx_model``, within ``allowed_prob_diff()`` unless ``max_prob_diff``
    is given). A file that cannot be built, is not portable or cannot be opened raises ``OnnxExportError``
    naming the problem, and the training run fails: the export itself is broken. A file that runs but
    answers further from PyTorch than allowed is refused instead: the version is still a good model, so it
    ships without that file and with the reason (``REFUSED``), and every replica serves it through
    PyTorch and says why, without rebuilding the same file.
    """
    runtimes = shipped_runtimes()
    allowed = allowed_prob_diff() if max_prob_diff is None else max_prob_diff
    started = time.perf_counter()
    diffs: list[str] = []
    shipped: list[Runtime] = []
    for runtime in runtimes:
        try:
            path = build_onnx_model(classifier, Path(classifier_dir) / SHIPPED_DIR, runtime)
            diffs.append(f"{verify_onnx_model(classifier, path, runtime, max_prob_diff=allowed):.4f}")
            shipped.append(runtime)
        except OnnxDisagreementError as exc:
            path.unlink()
            reason = f"the pipeline refused the {runtime} file: {exc}"
            shipped_onnx_path(classifier_dir, runtime, REFUSED).write_text(json.dumps({"reason": reason}))
            log.warning("the version ships no %s file; replicas serve PyTorch: %s", runtime, reason)
        except Exception as exc:
            shutil.rmtree(Path(classifier_dir) / SHIPPED_DIR, ignore_errors=True)
            raise OnnxExportError(
                f"the version's {runtime} file for the model server cannot be shipped, so the version is "
                f"not logged: {exc}"
            ) from exc
    if shipped:
        size = sum(shipped_onnx_path(classifier_dir, r).stat().st_size for r in shipped) / 2**20
        log.info(
            "built and verified %s for the version in %.1f s (%.1f MiB; largest probability difference "
            "from PyTorch %s, allowed %s)",
            ", ".join(shipped),
            time.perf_counter() - started,
            size,
            ", ".join(diffs),
            allowed,
        )
    return list(shipped)


def open_session(model_path: Path, threads: int, optimization: Optimization = "all") -> Any:
    """An ONNX Runtime session on ``model_path``, as a replica opens it.

    ``optimization``: the graph optimization level; ``all`` (serving) applies the fusions and kernels of
    the CPU that opens the file, ``basic`` only the hardware-independent rewrites.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    # No busy-waiting between operators: the request threads need the same cores (measured: spinning
    # gained nothing here).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


class OnnxClassifier(TextClassifier):
    """``TransformerClassifier``'s tokenisation and batching, ONNX Runtime's forward pass (``open_session``).

    ``origin``: where the file came from, ``shipped`` with the version or ``built`` here (``GET /model``'s
    ``runtime_source``).
    """

    family = FAMILY_TRANSFORMER

    def __init__(
        self,
        source: TransformerClassifier,
        model_path: Path,
        runtime: Runtime,
        threads: int,
        *,
        optimization: Optimization = "all",
        origin: Origin = "built",
    ) -> None:
        self.session = open_session(model_path, threads, optimization)
        self.runtime = runtime
        self.model_path = Path(model_path)
        self.origin: Origin = origin
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


def _agreement(reference: np.ndarray, answers: np.ndarray, max_prob_diff: float) -> float:
    diff = float(np.max(np.abs(reference - answers))) if reference.size else 0.0
    if not np.isfinite(diff) or diff > max_prob_diff:
        raise OnnxDisagreementError(
            f"the ONNX model disagrees with the PyTorch model by {diff:.4f} in probability "
            f"(allowed {max_prob_diff})"
        )
    return diff


#: Why a replica on an x86 CPU without AVX-512 VNNI does not serve the int8 file (``int8_exact_here``).
NO_VNNI = (
    "this CPU has no AVX-512 VNNI: ONNX Runtime sums the int8 file's uint8 x int8 products in pairs in "
    "16 bits here, which saturate and move its answers"
)


def int8_exact_here() -> bool:
    """Whether ONNX Runtime computes the int8 file's products here as exactly as where it was checked.

    On x86 only with AVX-512 VNNI (which CPUs with AMX have too): without it, ``MatMulInteger`` multiplies
    uint8 by int8 with ``VPMADDUBSW``, which adds each pair of products into 16 bits with saturation, and a
    fine-tuned model's answers then move far past the allowed difference (``benchmarks/int8_isa.py``). An
    int8 x int8 file would be exact there but slower than fp32 on VNNI CPUs. Read from CPUID as numpy sees
    it, so an emulated CPU counts as the CPU it emulates. Other architectures' int8 kernels widen before
    they add.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    features = importlib.import_module("numpy._core._multiarray_umath").__cpu_features__
    return bool(features.get("AVX512VNNI"))


def check_agreement(
    reference: TextClassifier, candidate: TextClassifier, texts: Sequence[str], max_prob_diff: float
) -> float:
    """Largest absolute probability difference on ``texts``; raises when above ``max_prob_diff``."""
    return _agreement(reference.predict_proba(texts), candidate.predict_proba(texts), max_prob_diff)


#: How ``to_runtime``'s errors name the file they are about.
_ORIGIN_TEXT = {"shipped": "the version's shipped file", "built": "the file built by this replica"}


def to_runtime(
    classifier: TextClassifier,
    runtime: Runtime,
    cache_dir: Path,
    *,
    threads: int,
    check_texts: Sequence[str] = CHECK_TEXTS,
    max_prob_diff: float,
) -> TextClassifier:
    """``classifier`` itself for ``torch`` or a non-transformer; else its checked ONNX Runtime twin.

    The twin runs the version's shipped file as it is (``origin`` ``shipped``); only a version that ships
    none gets a file built here and cached in ``cache_dir`` (``built``). Either must pass
    ``check_agreement``. A shipped file that cannot be opened or disagrees, or a file the pipeline refused
    (``REFUSED``), raises ``OnnxExportError`` (the caller serves PyTorch): rebuilding it here would
    give the same file, at a cost on every worker. So does ``onnx-int8`` on a CPU that cannot compute it
    exactly (``int8_exact_here``).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "torch" or not isinstance(classifier, TransformerClassifier):
        return classifier
    if classifier.device != "cpu":
        log.info("runtime %s applies to CPU serving; keeping PyTorch on %s", runtime, classifier.device)
        return classifier
    import onnxruntime as ort

    if runtime == "onnx-int8" and not int8_exact_here():
        raise OnnxExportError(NO_VNNI)
    refusal = shipped_onnx_model(classifier, runtime, REFUSED)
    if refusal is not None:
        raise OnnxExportError(str(json.loads(refusal.read_text())["reason"]))
    shipped = shipped_onnx_model(classifier, runtime)
    origin: Origin = "built" if shipped is None else "shipped"
    try:
        if shipped is None:
            candidate = OnnxClassifier(
                classifier, build_onnx_model(classifier, cache_dir, runtime), runtime, threads
            )
        else:
            try:
                candidate = OnnxClassifier(classifier, shipped, runtime, threads, origin="shipped")
            except Exception as exc:
                raise OnnxExportError(f"ONNX Runtime {ort.__version__} cannot open it: {exc}") from exc
        diff = check_agreement(classifier, candidate, check_texts, max_prob_diff)
    except OnnxExportError as exc:
        raise OnnxExportError(f"{_ORIGIN_TEXT[origin]}: {exc}") from exc
    log.info(
        "serving through %s (%s, %s); largest probability difference on check texts %.5f",
        runtime,
        _ORIGIN_TEXT[origin],
        candidate.model_path,
        diff,
    )
    return candidate


def for_serving(
    classifier: TextClassifier,
    runtime: Runtime,
    cache_dir: Path,
    *,
    threads: int,
    max_prob_diff: float,
    max_batch_tokens: int,
) -> TextClassifier:
    """What a replica serves: on CPU, forward batches of at most ``max_batch_tokens`` padded tokens (long
    reviews run alone, short texts many at a time), through ``runtime`` (``to_runtime``)."""
    if isinstance(classifier, TransformerClassifier) and classifier.device == "cpu":
        classifier.max_batch_tokens = max_batch_tokens
    return to_runtime(classifier, runtime, cache_dir, threads=threads, max_prob_diff=max_prob_diff)
