"""Serving transformers through ONNX Runtime: same answers as PyTorch, cached builds, a gate, a fallback.

Unit tests use the tiny random BERT (real tokenizer); a registered transformer version is deployed to a
real gunicorn server (a fresh process, as a replica) and its answers compared with
``mlflow.pyfunc.load_model``. A version logged by the pipeline ships its int8 ONNX file inside its signed
folder: a portable file (standard ONNX operators only), verified before it is logged (a file that fails
fails the log), served by replicas as it is without building it (one they cannot use falls back to PyTorch
and says why, never rebuilt); a version without one still gets it built, and a shipped file changed in S3 is
refused by signature verification.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

from sentiflow import names
from sentiflow.families.transformer import onnx_runtime
from sentiflow.families.transformer.model import TransformerClassifier
from sentiflow.families.transformer.onnx_runtime import (
    FP32_NODES,
    SHIPPED_DIR,
    OnnxClassifier,
    OnnxExportError,
    allowed_prob_diff,
    build_onnx_model,
    check_agreement,
    check_portable,
    quantize_int8,
    ship_onnx_models,
    shipped_onnx_path,
    to_runtime,
)
from sentiflow.settings.server import ServerSettings
from tests.devserver import assert_serves_shipped_int8_here

TEXTS = [
    "a wonderful moving film, loved it",
    "dull and too long, badly acted",
    "short",
    "a much longer review that goes on about the plot " * 30,  # past max_length: truncated
    "medium length review here, quite good",
    "x",
    "another " * 20,
]


@pytest.fixture(autouse=True)
def as_on_a_vnni_cpu(monkeypatch) -> None:
    """In this process, the CPU may serve int8: what happens to a shipped, built, refused or unreadable file
    is the same on every CPU, and whether a CPU may serve int8 at all is tested on an emulated CPU below
    (a VNNI CPU cannot be had where the suite runs on one without). Server processes see the real CPU."""
    monkeypatch.setattr(onnx_runtime, "int8_exact_here", lambda: True)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> TransformerClassifier:
    return TransformerClassifier.from_pretrained(str(tiny_model_dir), ["neg", "pos"], max_length=64)


@pytest.fixture(scope="module")
def sharp(tiny_model_dir: Path) -> TransformerClassifier:
    """The tiny model fitted for a few steps on clear-cut texts: confident, text-dependent probabilities
    (a random head gives ~0.5 everywhere, where any runtime would agree)."""
    import torch

    from tests.devserver import NEG_TEXTS, POS_TEXTS

    torch.manual_seed(0)
    clf = TransformerClassifier.from_pretrained(str(tiny_model_dir), ["neg", "pos"], max_length=64)
    batch = clf.tokenizer(NEG_TEXTS + POS_TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor([0] * len(NEG_TEXTS) + [1] * len(POS_TEXTS))
    optimizer = torch.optim.Adam(clf.model.parameters(), lr=3e-3)
    clf.model.train()
    for _ in range(30):
        optimizer.zero_grad()
        clf.model(**batch, labels=labels).loss.backward()
        optimizer.step()
    clf.model.eval()
    return clf


def test_onnx_fp32_gives_pytorch_numbers_in_input_order(tiny, tmp_path) -> None:
    path = build_onnx_model(tiny, tmp_path, "onnx")
    onnx = OnnxClassifier(tiny, path, "onnx", threads=1)
    expected = np.vstack([tiny.predict_proba([t]) for t in TEXTS])
    np.testing.assert_allclose(onnx.predict_proba(TEXTS, batch_size=2), expected, atol=1e-4)
    assert onnx.predict_proba([]).shape == (0, 2)
    assert [p.label for p in onnx.predict(TEXTS)] == [p.label for p in tiny.predict(TEXTS)]


def test_a_model_trained_in_bf16_ships_an_fp32_file_a_cpu_opens(sharp, tmp_path) -> None:
    """Mixed precision leaves bf16 weights in the trained model (a GPU, or a CPU with native bf16): the
    file is exported from fp32 weights, as a replica loads the folder, and the model keeps its dtype."""
    import torch

    reference = sharp.predict_proba(TEXTS)
    sharp.model.to(dtype=torch.bfloat16)
    try:
        path = build_onnx_model(sharp, tmp_path, "onnx")
        assert next(sharp.model.parameters()).dtype == torch.bfloat16
        onnx = OnnxClassifier(sharp, path, "onnx", threads=1)  # a bf16 MatMul has no CPU kernel
    finally:
        sharp.model.to(dtype=torch.float32)
    np.testing.assert_allclose(onnx.predict_proba(TEXTS), reference, atol=2e-2)  # bf16-rounded weights


def test_int8_is_close_and_builds_once(sharp, tmp_path) -> None:
    import onnx

    path = build_onnx_model(sharp, tmp_path, "onnx-int8")
    assert [p.name for p in tmp_path.iterdir()] == ["model.int8.onnx"]  # no fp32 copy, no leftovers
    graph = onnx.load(str(path)).graph
    weights = {i.name for i in graph.initializer}
    fp32_linear = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    assert all(any(part in name for part in FP32_NODES) for name in fp32_linear)  # the rest is int8
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) > len(fp32_linear)
    int8 = OnnxClassifier(sharp, path, "onnx-int8", threads=1)
    reference = sharp.predict_proba(TEXTS)
    assert np.ptp(reference[:, 0]) > 0.2  # the sharp head gives the runtimes something to disagree on
    diff = np.abs(int8.predict_proba(TEXTS) - reference).max()
    assert 0 < diff < 0.05
    mtime = path.stat().st_mtime_ns
    assert build_onnx_model(sharp, tmp_path, "onnx-int8") == path
    assert path.stat().st_mtime_ns == mtime  # cached: a second worker does not rebuild


#: QEMU's model of a CPU with AVX2 and FMA but no AVX-512 (so no VNNI): ONNX Runtime picks that CPU's int8
#: kernels, whatever CPU runs the emulator.
AVX2_ONLY_CPU = "Haswell"
#: On that CPU: what ``int8_exact_here`` says, and a uint8 x int8 ``MatMulInteger`` near full range against
#: the exact product, in a session opened as the server opens the int8 file.
_INT8_ON_THAT_CPU = """
import importlib, sys
import numpy as np
from onnx import TensorProto, helper, numpy_helper, save
from sentiflow.families.transformer.onnx_runtime import int8_exact_here, open_session
cpu = importlib.import_module("numpy._core._multiarray_umath").__cpu_features__
assert cpu["AVX2"] and not cpu["AVX512F"], "not the emulated CPU"
a, b = np.full((4, 64), 250, np.uint8), np.full((64, 8), 127, np.int8)
graph = helper.make_graph(
    [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "g",
    [helper.make_tensor_value_info("a", TensorProto.UINT8, list(a.shape))],
    [helper.make_tensor_value_info("y", TensorProto.INT32, [4, 8])], [numpy_helper.from_array(b, "b")],
)
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
y = open_session(sys.argv[1], threads=1).run(None, {"a": a})[0]
print(int8_exact_here(), int(np.abs(y - a.astype(np.int64) @ b.astype(np.int64)).max()))
"""


def test_a_cpu_without_vnni_saturates_int8_sums_and_is_told_apart(tmp_path) -> None:
    done = subprocess.run(
        ["qemu-x86_64", "-cpu", AVX2_ONLY_CPU, sys.executable, "-c", _INT8_ON_THAT_CPU,
         str(tmp_path / "product.onnx")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    exact_here, error = done.stdout.split()
    assert exact_here == "False" and int(error) > 0


def test_a_replica_that_cannot_compute_int8_exactly_serves_pytorch_and_says_why(
    sharp, tmp_path, monkeypatch
) -> None:
    # this process's CPU is what it is: the emulated one is above; here only the decision's consequence
    monkeypatch.setattr(onnx_runtime, "int8_exact_here", lambda: False)
    with pytest.raises(OnnxExportError, match="no AVX-512 VNNI"):
        to_runtime(sharp, "onnx-int8", tmp_path, threads=1, max_prob_diff=allowed_prob_diff())
    assert list(tmp_path.iterdir()) == []  # nothing built in its place
    assert isinstance(to_runtime(sharp, "onnx", tmp_path, threads=1, max_prob_diff=0.01), OnnxClassifier)


def _linear_layer(path: Path, weight: np.ndarray, bias: np.ndarray) -> None:
    """``x @ weight + bias`` as the export writes a linear layer: ``MatMul`` on a constant, then ``Add``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "weight"], ["product"], name="/layer/dense/MatMul"),
            helper.make_node("Add", ["bias", "product"], ["y"], name="/layer/dense/Add"),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", weight.shape[1]])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_per_token_int8_keeps_ordinary_tokens_exact_beside_an_outlier_token(tmp_path) -> None:
    """One token with outsized activations sets a per-tensor scale that flattens every other token; per
    token, each keeps its own range (and its zero point: the activations here are not centred on 0)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 48)).astype(np.float32)
    bias = rng.normal(size=48).astype(np.float32)
    x = rng.uniform(-0.3, 1.0, size=(2, 9, 64)).astype(np.float32)
    x[1, 4] *= 200  # the outlier token
    _linear_layer(tmp_path / "fp32.onnx", weight, bias)
    exact = x @ weight + bias
    ordinary = np.ones(x.shape[:2], dtype=bool)
    ordinary[1, 4] = False
    errors = {}
    for per_token in (True, False):
        target = tmp_path / f"per_token_{per_token}.onnx"
        quantize_int8(
            tmp_path / "fp32.onnx", target, op_types=("MatMul",), fp32_nodes=(), per_token=per_token
        )
        check_portable(target)
        for level in (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            (y,) = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"]).run(
                None, {"x": x}
            )
            error = np.abs(y - exact)[ordinary].max() / np.abs(exact[ordinary]).max()
            errors[per_token] = max(errors.get(per_token, 0.0), error)
            np.testing.assert_allclose(y[1, 4], exact[1, 4], rtol=0.05, atol=0.02 * np.abs(exact[1, 4]).max())
    assert errors[True] < 0.02
    assert errors[False] > 5 * errors[True]


def test_the_int8_file_holds_only_standard_operators_and_a_fused_one_is_refused(tiny, tmp_path) -> None:
    """No ORT contrib op (fused attention, skip-layer-norm, QAttention) is saved: those kernels are chosen
    per machine and execution provider; the server's session fuses at load time instead."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    path = build_onnx_model(tiny, tmp_path / "int8", "onnx-int8")
    model = onnx.load(str(path))
    assert {n.domain for n in model.graph.node} == {""}
    assert {i.domain for i in model.opset_import} == {""}  # nothing saved by an ORT session
    assert {"MatMulInteger", "ReduceMax", "Cast"} <= {n.op_type for n in model.graph.node}  # per token
    check_portable(path)
    basic = OnnxClassifier(tiny, path, "onnx-int8", threads=1, optimization="basic")
    served = OnnxClassifier(tiny, path, "onnx-int8", threads=1)  # the server's level: fused at load
    np.testing.assert_allclose(basic.predict_proba(TEXTS), served.predict_proba(TEXTS), atol=1e-3)

    fp32 = build_onnx_model(tiny, tmp_path / "fp32", "onnx")
    fused = optimize_model(str(fp32), model_type="bert", num_heads=2, hidden_size=32)  # ORT's fusions
    fused.save_model_to_file(str(tmp_path / "fused.onnx"))
    with pytest.raises(OnnxExportError, match=r"fused\.onnx is not portable: .*com\.microsoft\.\w+"):
        check_portable(tmp_path / "fused.onnx")


def test_to_runtime_keeps_torch_and_other_families(tiny, tmp_path) -> None:
    from sentiflow.families.tfidf.model import TfidfClassifier

    common = {"threads": 1, "check_texts": TEXTS, "max_prob_diff": 0.05}
    assert to_runtime(tiny, "torch", tmp_path, **common) is tiny
    tfidf = TfidfClassifier.build(["neg", "pos"]).fit(["good film", "bad film"] * 3, [1, 0] * 3)
    assert to_runtime(tfidf, "onnx-int8", tmp_path, **common) is tfidf
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        to_runtime(tiny, "tensorrt", tmp_path, **common)
    assert not list(tmp_path.iterdir())  # nothing was built


def test_a_disagreeing_model_is_refused(tiny, sharp, tmp_path) -> None:
    other = OnnxClassifier(tiny, build_onnx_model(tiny, tmp_path, "onnx"), "onnx", threads=1)
    with pytest.raises(OnnxExportError, match=r"disagrees with the PyTorch model by 0\.[1-9]"):
        check_agreement(sharp, other, TEXTS, max_prob_diff=0.05)
    with pytest.raises(OnnxExportError, match="allowed 1e-09"):
        to_runtime(sharp, "onnx-int8", tmp_path / "gate", threads=1, check_texts=TEXTS, max_prob_diff=1e-9)


def _loaded(classifier: TransformerClassifier, version: str = "3"):
    """A registry version as the server holds it, without the registry."""
    from serving.model.loaded import LoadedModel

    return LoadedModel(
        version=version,
        name="m",
        run_id="r",
        family="transformer",
        label_names=["neg", "pos"],
        metrics={},
        loaded_at="now",
        source=f"models:/m/{version}",
        classifier=classifier,
    )


def test_server_falls_back_to_pytorch_when_the_gate_refuses(sharp, tmp_path) -> None:
    from serving.model.manager import for_serving

    model = _loaded(sharp)
    served = for_serving(model, ServerSettings(state_dir=tmp_path))
    assert served.runtime == "onnx-int8" and isinstance(served.classifier, OnnxClassifier)
    assert served.runtime_source == "built" and served.runtime_fallback is None
    assert (tmp_path / "onnx" / "m-v3-r" / "model.int8.onnx").exists()
    strict = ServerSettings(state_dir=tmp_path / "strict", runtime_max_prob_diff=1e-9)
    refused = for_serving(model, strict)
    assert refused.runtime == "torch" and refused.classifier is sharp and refused.runtime_source is None
    assert refused.runtime_fallback.startswith("onnx-int8 unavailable: the file built by this replica: ")
    assert "disagrees with the PyTorch model" in refused.runtime_fallback
    assert for_serving(model, ServerSettings(state_dir=tmp_path, runtime="torch")) is model


def test_deployed_transformer_is_served_through_onnx_int8_with_pyfunc_answers(
    stack, sharp, tmp_path, monkeypatch
) -> None:
    import mlflow

    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings
    from tests.devserver import DevServer

    monkeypatch.setenv("SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME", f"onnx-test-{uuid.uuid4().hex[:8]}")
    mlflow.set_experiment(MLflowSettings().experiment_name)
    with mlflow.start_run():
        info = log_classifier(sharp, registered_model_name=MLflowSettings().registered_model_name)
    expected = mlflow.pyfunc.load_model(info.model_uri).predict(TEXTS)

    server = DevServer(stack, {"SENTIFLOW_SERVER_WORKERS": "1"}, state_root=tmp_path / "state").start()
    try:
        server.serving(str(info.registered_model_version), timeout_s=300)
        served = requests.get(f"{server.url}/model", timeout=10).json()
        answer = requests.post(f"{server.url}/predict", json={"texts": TEXTS}, timeout=60).json()
    finally:
        server.stop()
    # a fresh worker process, as a replica: it served the file shipped with the version and built none
    assert_serves_shipped_int8_here(served)
    assert not (server.state_dir / "onnx").exists()
    served = np.array([[p["scores"]["neg"], p["scores"]["pos"]] for p in answer["predictions"]])
    reference = expected[["score_neg", "score_pos"]].to_numpy()
    assert np.abs(served - reference).max() < 0.05
    assert [p["label"] for p in answer["predictions"]] == expected["label"].tolist()


def test_token_cap_splits_batches_by_padded_size_and_keeps_answers(tiny) -> None:
    from serving.model.manager import for_serving

    uncapped = tiny.predict_proba(TEXTS)
    chunks: list[list[int]] = []

    def record(batch_ids: list[list[int]]) -> np.ndarray:
        chunks.append([len(ids) for ids in batch_ids])
        return np.zeros((len(batch_ids), 2))

    model = _loaded(tiny, version="1")
    try:
        for_serving(model, ServerSettings(batch_max_tokens=64, runtime="torch"))
        assert tiny.max_batch_tokens == 64
        tiny.predict_sorted(TEXTS, 32, record)
        assert sorted(n for chunk in chunks for n in chunk) == sorted(len(ids) for ids in tiny.encode(TEXTS))
        assert chunks[0] == [64]  # the truncated long review (max_length 64) runs alone
        assert all(len(chunk) * max(chunk) <= 64 or len(chunk) == 1 for chunk in chunks)
        assert max(len(chunk) for chunk in chunks) > 1  # short texts still share a forward pass
        np.testing.assert_allclose(tiny.predict_proba(TEXTS), uncapped, atol=1e-5)
    finally:
        tiny.max_batch_tokens = None


# --- the ONNX file shipped with the version (built once, at log time) ---------------------------------------
def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``build_onnx_model`` call from now on, by runtime (the real build still runs)."""
    calls: list[str] = []
    real = onnx_runtime.build_onnx_model

    def counted(classifier, directory, runtime):
        calls.append(runtime)
        return real(classifier, directory, runtime)

    monkeypatch.setattr(onnx_runtime, "build_onnx_model", counted)
    return calls


def _failing_export(*args: object) -> None:
    raise RuntimeError("exporter exploded")


def test_a_shipped_file_is_served_as_it_is_and_an_unreadable_one_falls_back_unbuilt(
    sharp, tmp_path, monkeypatch
):
    from sentiflow.modeling.pyfunc import save_classifier
    from serving.model.manager import for_serving

    folder = save_classifier(sharp, tmp_path / "classifier")
    assert ship_onnx_models(sharp, folder) == ["onnx-int8"]  # the server's default runtime, not fp32
    shipped = shipped_onnx_path(folder, "onnx-int8")
    assert sorted(p.name for p in (folder / SHIPPED_DIR).iterdir()) == [shipped.name]
    loaded = TransformerClassifier.load(folder, ["neg", "pos"])
    builds = _count_builds(monkeypatch)
    common = {"threads": 1, "check_texts": TEXTS, "max_prob_diff": 0.05}

    served = to_runtime(loaded, "onnx-int8", tmp_path / "cache", **common)
    assert isinstance(served, OnnxClassifier) and served.model_path == shipped and served.origin == "shipped"
    assert builds == [] and not (tmp_path / "cache").exists()
    assert np.abs(served.predict_proba(TEXTS) - sharp.predict_proba(TEXTS)).max() < 0.05

    fp32 = to_runtime(loaded, "onnx", tmp_path / "cache", **common)  # not shipped: built here
    assert builds == ["onnx"] and fp32.model_path == tmp_path / "cache" / "model.onnx"

    shipped.write_bytes(b"not an ONNX model")  # e.g. made by an ONNX Runtime this one cannot read
    cannot_open = r"^the version's shipped file: ONNX Runtime [\d.]+ cannot open it: "
    with pytest.raises(OnnxExportError, match=cannot_open):
        to_runtime(loaded, "onnx-int8", tmp_path / "cache", **common)
    model = _loaded(loaded)
    fallback = for_serving(model, ServerSettings(state_dir=tmp_path / "state"))
    assert fallback.runtime == "torch" and fallback.classifier is loaded
    assert fallback.runtime_fallback.startswith("onnx-int8 unavailable: the version's shipped file: ")
    assert builds == ["onnx"] and not (tmp_path / "state" / "onnx").exists()  # not rebuilt


def _garbage_quantizer(source: Path, target: Path) -> None:
    target.write_bytes(b"not an ONNX model")


def _kernel_less_quantizer(source: Path, target: Path) -> None:
    """A valid ONNX file with an operator this ONNX Runtime has no kernel for."""
    import onnx

    model = onnx.load(str(source))
    next(n for n in model.graph.node if n.op_type == "MatMul").op_type = "MatMulWithoutKernel"
    onnx.save(model, str(target))


def test_a_disagreeing_file_is_refused_with_its_reason_and_served_through_pytorch_unbuilt(
    sharp, tmp_path, monkeypatch
):
    """The export works but int8 answers too far from PyTorch: the version is still logged, without the
    file and with the reason, and a replica serves PyTorch and says why, building nothing."""
    from sentiflow.modeling.pyfunc import save_classifier
    from serving.model.manager import for_serving

    folder = save_classifier(sharp, tmp_path / "classifier")
    assert ship_onnx_models(sharp, folder, max_prob_diff=1e-9) == []
    assert not shipped_onnx_path(folder, "onnx-int8").exists()
    loaded = TransformerClassifier.load(folder, ["neg", "pos"])
    builds = _count_builds(monkeypatch)
    refused = r"^the pipeline refused the onnx-int8 file: the ONNX model disagrees .* \(allowed 1e-09\)"
    with pytest.raises(OnnxExportError, match=refused):
        to_runtime(loaded, "onnx-int8", tmp_path / "cache", threads=1, max_prob_diff=0.05)
    fallback = for_serving(_loaded(loaded), ServerSettings(state_dir=tmp_path / "state"))
    assert fallback.runtime == "torch" and fallback.classifier is loaded
    assert "the pipeline refused the onnx-int8 file" in fallback.runtime_fallback
    assert builds == [] and not (tmp_path / "state" / "onnx").exists()


def test_a_file_that_cannot_be_built_or_opened_fails_loudly_and_ships_nothing(sharp, tmp_path, monkeypatch):
    """Build, read or open: each failure names itself, and the version is not logged."""
    from sentiflow.modeling.pyfunc import save_classifier

    folder = save_classifier(sharp, tmp_path / "classifier")
    with monkeypatch.context() as patch:
        patch.setattr(onnx_runtime, "quantize_int8", _garbage_quantizer)
        with pytest.raises(OnnxExportError, match=r"cannot read model\.int8\.onnx as an ONNX model"):
            ship_onnx_models(sharp, folder)
    with monkeypatch.context() as patch:
        patch.setattr(onnx_runtime, "quantize_int8", _kernel_less_quantizer)
        cannot_open = r"ONNX Runtime [\d.]+ cannot open model\.int8\.onnx with graph optimization 'basic'"
        with pytest.raises(OnnxExportError, match=cannot_open + r": .*MatMulWithoutKernel"):
            ship_onnx_models(sharp, folder)
    with monkeypatch.context() as patch:
        patch.setattr(onnx_runtime, "_export", _failing_export)
        with pytest.raises(
            OnnxExportError, match=r"cannot build the onnx-int8 model: RuntimeError: exporter exploded"
        ):
            ship_onnx_models(sharp, folder)
    assert (
        sorted(p.name for p in folder.iterdir() if p.name == SHIPPED_DIR or p.name.startswith(".build")) == []
    )
    assert ship_onnx_models(sharp, folder) == ["onnx-int8"]  # within the server's allowed difference


@pytest.fixture(scope="module")
def shipped_version(stack, sharp):
    """A fresh registered model with two signed versions of ``sharp``, logged as the pipeline logs them:
    ``shipped`` with its ONNX file, ``unshipped`` with none (as a version logged before files shipped)."""
    import mlflow
    from mlflow import MlflowClient

    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings

    settings = MLflowSettings(registered_model_name=f"onnx-shipped-{uuid.uuid4().hex[:8]}")
    mlflow.set_experiment(settings.experiment_name)
    out: dict = {"settings": settings}
    for kind in ("shipped", "unshipped"):
        with pytest.MonkeyPatch.context() as patch, mlflow.start_run() as run:
            if kind == "unshipped":
                patch.setattr(onnx_runtime, "shipped_runtimes", lambda: ())
            info = log_classifier(sharp, registered_model_name=settings.registered_model_name)
        tags = MlflowClient().get_run(run.info.run_id).data.tags
        out[kind] = str(info.registered_model_version)
        out[f"{kind}_tag"] = tags[names.TAG_ONNX_SHIPPED]
        out[f"{kind}_expected"] = mlflow.pyfunc.load_model(info.model_uri).predict(TEXTS)
    return out


def release(shipped: dict, version: str) -> None:
    """The pipeline's release of ``version`` (its signed approval): what a replica needs before it loads."""
    from tests.devserver import make_champion

    make_champion(version, name=shipped["settings"].registered_model_name)


def _registry(shipped_version, state_dir=None):
    """A replica's registry; ``state_dir``: a fresh replica's (no version downloaded yet)."""
    from serving.model.registry_reader import RegistryReader

    server = ServerSettings() if state_dir is None else ServerSettings(state_dir=state_dir)
    return RegistryReader(shipped_version["settings"], server)


def test_a_replica_serves_the_shipped_file_without_building_it(shipped_version, tmp_path, monkeypatch):
    from serving.model.manager import for_serving

    assert shipped_version["shipped_tag"] == "onnx-int8"
    assert ServerSettings().signing_public_keys, "the stack's server verifies signatures"
    builds = _count_builds(monkeypatch)
    release(shipped_version, shipped_version["shipped"])
    model = _registry(shipped_version).load(shipped_version["shipped"])  # downloads and verifies
    shipped = shipped_onnx_path(model.classifier.loaded_from, "onnx-int8")
    assert shipped.is_file()
    served = for_serving(model, ServerSettings(state_dir=tmp_path))
    assert served.runtime == "onnx-int8" and served.classifier.model_path == shipped
    assert served.runtime_source == "shipped"
    assert builds == [] and not (tmp_path / "onnx").exists()  # no export, no cache entry
    expected = shipped_version["shipped_expected"]
    answers = served.classifier.predict_proba(TEXTS)
    assert np.abs(answers - expected[["score_neg", "score_pos"]].to_numpy()).max() < 0.05
    assert [["neg", "pos"][i] for i in answers.argmax(axis=1)] == expected["label"].tolist()


def test_a_version_without_the_shipped_file_is_built_by_the_replica(shipped_version, tmp_path, monkeypatch):
    from serving.model.manager import for_serving

    assert shipped_version["unshipped_tag"] == "none"
    builds = _count_builds(monkeypatch)
    release(shipped_version, shipped_version["unshipped"])
    model = _registry(shipped_version).load(shipped_version["unshipped"])
    assert not (model.classifier.loaded_from / SHIPPED_DIR).exists()
    served = for_serving(model, ServerSettings(state_dir=tmp_path))
    assert served.runtime == "onnx-int8" and builds == ["onnx-int8"] and served.runtime_source == "built"
    cache = tmp_path / "onnx" / f"{model.name}-v{model.version}-{model.run_id}" / "model.int8.onnx"
    assert served.classifier.model_path == cache and cache.is_file()
    expected = shipped_version["unshipped_expected"][["score_neg", "score_pos"]].to_numpy()
    assert np.abs(served.classifier.predict_proba(TEXTS) - expected).max() < 0.05


def test_a_shipped_onnx_file_changed_in_s3_is_refused(shipped_version, stack, tmp_path):
    """Overwrite the version's int8 ONNX file in the bucket: a replica that downloads it then refuses the
    whole version (a replica's kept copy from before the overwrite is its own verified download)."""
    from sentiflow.security.signing import SIGNATURE_FILE, SignatureError
    from tests.tamper import tampered_version

    settings, version = shipped_version["settings"], shipped_version["shipped"]
    release(shipped_version, version)
    refused = pytest.raises(SignatureError, match=rf"{SIGNATURE_FILE} does not match.*model\.int8\.onnx")
    with tampered_version(settings.registered_model_name, version, f"{SHIPPED_DIR}/model.int8.onnx"), refused:
        _registry(shipped_version, tmp_path / "fresh").load(version)
    assert _registry(shipped_version, tmp_path / "after").load(version).version == version
