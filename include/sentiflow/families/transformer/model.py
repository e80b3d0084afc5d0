"""The transformer family: any ``AutoModelForSequenceClassification`` plus its tokenizer.

One class serves training (it owns the tokenisation rules, so train and inference truncate the same way)
and serving (``predict_proba`` sorts by length, pads each batch only to its longest text and runs under
``torch.inference_mode`` with optional bf16 autocast). Heavy imports stay inside methods because
``sentiflow.modeling`` is imported at DAG parse time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sentiflow.modeling.base import TextClassifier
from sentiflow.names import FAMILY_TRANSFORMER

INFERENCE_CONFIG_FILE = "sentiflow_inference.json"
Truncation = Literal["head", "head_tail"]
Bf16 = Literal["auto", "on", "off"]
#: Share of the token budget kept from the start of a long text with ``head_tail`` (Sun et al. 2019 kept
#: 128 of 510 tokens from the head and the rest from the tail for IMDb).
HEAD_SHARE = 0.25
#: Config attributes that hold the attention-probability dropout, by model family (BERT/RoBERTa/DeBERTa;
#: DistilBERT/ModernBERT; GPT-2).
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
#: Config attributes that hold the dropout on hidden states: embeddings, attention output, feed-forward
#: output (and BERT's classification head, unless its ``classifier_dropout`` is set). BERT/RoBERTa/ELECTRA;
#: DistilBERT; GPT-2; ModernBERT.
HIDDEN_DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "dropout",
    "resid_pdrop",
    "embd_pdrop",
    "embedding_dropout",
    "mlp_dropout",
)

log = logging.getLogger(__name__)


@cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX512-BF16, AMX); elsewhere bf16 is emulated, slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA when a GPU is visible, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is visible to torch")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def resolve_bf16(bf16: Bf16 | bool | str, device: str) -> bool:
    """``auto``: on where the hardware computes in bf16 natively (so it helps and does not hurt)."""
    import torch

    if isinstance(bf16, bool):
        return bf16
    if bf16 == "on":
        return True
    if bf16 == "off":
        return False
    if bf16 != "auto":
        raise ValueError(f"bf16 must be auto, on or off, not {bf16!r}")
    if device == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return cpu_supports_bf16()


def resolve_tf32(tf32: Bf16, device: str) -> bool:
    """``auto``: TensorFloat-32 matmuls on CUDA GPUs that have them (compute capability 8.0, Ampere, on).

    TF32 keeps float32's range with a 10-bit mantissa: for fine-tuning it changes nothing measurable and
    speeds up every float32 matmul that bf16 autocast leaves in float32. CPUs have no TF32; ``on`` there
    is an error rather than a silent no-op. ``tf32`` is ``TrainParams``' field, validated there.
    """
    import torch

    if tf32 == "off":
        return False
    supported = device == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
    if tf32 == "on" and not supported:
        raise ValueError("tf32 'on' needs a CUDA GPU of compute capability 8.0 (Ampere) or newer")
    return supported


class TransformerClassifier(TextClassifier):
    family = FAMILY_TRANSFORMER

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        label_names: list[str],
        *,
        max_length: int = 256,
        truncation: Truncation = "head",
        batch_size: int = 32,
        bf16: Bf16 | bool = "auto",
        device: str = "auto",
    ) -> None:
        if truncation not in ("head", "head_tail"):
            raise ValueError(f"truncation must be 'head' or 'head_tail', not {truncation!r}")
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, not {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.label_names = list(label_names)
        self.max_length = int(max_length)
        self.truncation: Truncation = truncation
        self.batch_size = int(batch_size)
        self.bf16 = bf16
        self.device = resolve_device(device)
        #: Serving-time cap on a batch's padded tokens (``predict_sorted``); None: ``batch_size`` only.
        self.max_batch_tokens: int | None = None
        #: The folder ``load`` read (None when built in memory): where a version ships its ONNX files.
        self.loaded_from: Path | None = None
        # One forward pass at a time: the fast tokenizer and the model are shared state.
        self._lock = threading.Lock()

    # --- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_name: str,
        label_names: list[str],
        *,
        num_hidden_layers: int | None = None,
        attn_implementation: str | None = None,
        attention_dropout: float | None = None,
        hidden_dropout: float | None = None,
        **kwargs: Any,
    ) -> TransformerClassifier:
        """A pretrained encoder with a fresh classification head sized from the dataset's labels.

        ``attention_dropout`` and ``hidden_dropout`` override the checkpoint's dropouts (None keeps them).
        At 0 attention dropout, torch's scaled-dot-product attention runs its fused kernel on CPU too;
        with dropout it falls back to the unfused path and samples a batch x heads x length x length mask
        per layer. Dropout masks come from ``bernoulli_``, a serial loop on non-Intel CPUs
        (pytorch/pytorch#138199), a large share of a CPU training step (``benchmarks/train_throughput.py``).
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        extra: dict[str, Any] = {}
        if num_hidden_layers:
            extra["num_hidden_layers"] = num_hidden_layers
        if attn_implementation:
            extra["attn_implementation"] = attn_implementation
        dropouts = {
            "attention_dropout": (ATTENTION_DROPOUT_KEYS, attention_dropout),
            "hidden_dropout": (HIDDEN_DROPOUT_KEYS, hidden_dropout),
        }
        if any(value is not None for _, value in dropouts.values()):
            config = AutoConfig.from_pretrained(model_name)
            for param, (candidates, value) in dropouts.items():
                if value is None:
                    continue
                keys = [key for key in candidates if hasattr(config, key)]
                if not keys:
                    log.warning("%s has no setting for %s; it is ignored", model_name, param)
                extra.update(dict.fromkeys(keys, float(value)))
        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name,
            # transformers 5 loads a checkpoint in the dtype it was saved in; many Hub checkpoints are
            # fp16/bf16, and fine-tuning half-precision master weights loses updates. Train in float32;
            # bf16 autocast (``bf16``) still runs the matrix products in bf16 where the hardware has it.
            dtype="float32",
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            # a checkpoint fine-tuned on another label set gets a fresh head instead of an error
            ignore_mismatched_sizes=True,
            **extra,
        )
        return cls(model, tokenizer, label_names, **kwargs)

    # --- tokenisation (shared by training and inference) ---------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with special tokens, at most ``max_length`` long, truncated per ``truncation``."""
        texts = [str(t) for t in texts]
        if self.truncation == "head":
            return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        prefix, suffix = self._special_tokens()
        budget = self.max_length - len(prefix) - len(suffix)
        head = int(budget * HEAD_SHARE)
        tail = budget - head
        out = []
        for ids in self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]:
            if len(ids) > budget:
                ids = ids[:head] + ids[len(ids) - tail :]
            out.append([*prefix, *ids, *suffix])
        return out

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids a tokenizer puts before and after one text (``[CLS]``/``[SEP]``, ``<s>``/``</s>`` ...).

        Derived by tokenizing a probe word with and without special tokens, so it works for any tokenizer
        (transformers 5 dropped ``build_inputs_with_special_tokens`` from many of them).
        """
        full = self.tokenizer("a")["input_ids"]
        core = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        for i in range(len(full) - len(core) + 1):
            if full[i : i + len(core)] == core:
                return full[:i], full[i + len(core) :]
        raise ValueError("cannot locate the text between the tokenizer's special tokens")

    # --- inference -------------------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        import torch

        with self._lock:
            model = self.model.to(self.device).eval()
            use_bf16 = resolve_bf16(self.bf16, self.device)

            def forward(batch_ids: list[list[int]]) -> np.ndarray:
                batch = self.tokenizer.pad({"input_ids": batch_ids}, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                with torch.autocast(self.device, dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(**batch).logits
                return torch.softmax(logits.float(), dim=-1).cpu().numpy()

            with torch.inference_mode():
                return self.predict_sorted(texts, batch_size or self.batch_size, forward)

    def predict_sorted(
        self,
        texts: Sequence[str],
        batch_size: int,
        forward: Callable[[list[list[int]]], np.ndarray],
    ) -> np.ndarray:
        """Probabilities in input order, computed by ``forward`` on batches of similar length.

        Longest first: similar lengths share a batch (little padding), and a too-big batch fails early.
        ``max_batch_tokens`` (set by the server on CPU) caps a batch's padded size (texts × longest): long
        texts then run in small batches and short ones in large batches, which on CPU beats any fixed
        batch size (``docs/serving.md``). Shared with the ONNX Runtime twin, so its batches are the same.
        """
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        if not len(texts):
            return out
        ids = self.encode(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        start = 0
        while start < len(order):
            size = batch_size
            if self.max_batch_tokens:
                size = max(1, min(size, self.max_batch_tokens // max(1, len(ids[order[start]]))))
            index = order[start : start + size]
            out[index] = forward([ids[i] for i in index])
            start += size
        return out

    # --- persistence ---------------------------------------------------------------------------------------
    def inference_config(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "truncation": self.truncation,
            "batch_size": self.batch_size,
            "bf16": self.bf16,
        }

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        (directory / INFERENCE_CONFIG_FILE).write_text(json.dumps(self.inference_config(), indent=2))

    @classmethod
    def load(cls, directory: Path, label_names: list[str], **overrides: Any) -> TransformerClassifier:
        """Load a saved classifier; ``overrides`` (e.g. ``batch_size``, ``bf16``, ``device``) win."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        directory = Path(directory)
        config_path = directory / INFERENCE_CONFIG_FILE
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        config.update(overrides)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForSequenceClassification.from_pretrained(directory)
        classifier = cls(model, tokenizer, label_names, **config)
        classifier.loaded_from = directory
        return classifier
