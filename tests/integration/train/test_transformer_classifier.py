"""The transformer classifier from a checkpoint, without the stack: head+tail truncation keeps a review's
start and end, the dropout params override the checkpoint's (``None`` keeps it), a half-precision checkpoint
is fine-tuned in float32, and ``predict_proba`` keeps the input order across length-sorted batches.

The model is the conftest's tiny random BERT (``tiny_model_dir``) with the offline model's tokenizer; no S3
or MLflow. The training runs themselves, against the real local stack, are in test_train.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_head_tail_truncation_keeps_start_and_end(tiny_model_dir: Path) -> None:
    from sentiflow.families.transformer.model import TransformerClassifier

    clf = TransformerClassifier.from_pretrained(
        str(tiny_model_dir), ["neg", "pos"], max_length=16, truncation="head_tail"
    )
    text = "start " + "middle " * 50 + "finish"
    ids = clf.encode([text, "short text"])
    assert len(ids[0]) == 16
    tokens = clf.tokenizer.convert_ids_to_tokens(ids[0])
    assert tokens[0] == "[CLS]" and tokens[1] == "start" and tokens[-2] == "finish" and tokens[-1] == "[SEP]"
    head = TransformerClassifier.from_pretrained(str(tiny_model_dir), ["neg", "pos"], max_length=16)
    assert "finish" not in head.tokenizer.convert_ids_to_tokens(head.encode([text])[0])
    assert ids[1] == head.encode(["short text"])[0]


def test_dropout_params_override_the_checkpoint_and_none_keeps_it(tiny_model_dir: Path) -> None:
    import torch

    from sentiflow.families.transformer.model import TransformerClassifier
    from sentiflow.families.transformer.params import TrainParams
    from sentiflow.families.transformer.training import build_classifier

    kept = TransformerClassifier.from_pretrained(str(tiny_model_dir), ["neg", "pos"], attention_dropout=None)
    assert kept.model.config.attention_probs_dropout_prob == 0.1  # the tiny config's own values
    assert kept.model.config.hidden_dropout_prob == 0.1
    params = TrainParams(model_name=str(tiny_model_dir), device="cpu")
    assert params.attention_dropout == 0.0 and params.hidden_dropout == 0.0
    built = build_classifier(params, ["neg", "pos"])
    assert built.model.config.attention_probs_dropout_prob == 0.0
    assert built.model.config.hidden_dropout_prob == 0.0
    assert {m.p for m in built.model.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    assert {m.p for m in kept.model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}

    hidden_only = build_classifier(params.model_copy(update={"attention_dropout": None}), ["neg", "pos"])
    assert hidden_only.model.config.attention_probs_dropout_prob == 0.1
    assert hidden_only.model.config.hidden_dropout_prob == 0.0
    attention_only = build_classifier(params.model_copy(update={"hidden_dropout": None}), ["neg", "pos"])
    assert attention_only.model.config.attention_probs_dropout_prob == 0.0
    assert attention_only.model.config.hidden_dropout_prob == 0.1


def test_half_precision_checkpoint_is_fine_tuned_in_float32(tiny_model_dir: Path, tmp_path: Path) -> None:
    """transformers 5 keeps a checkpoint's saved dtype; AdamW on fp16 master weights would lose updates."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sentiflow.families.transformer.params import TrainParams
    from sentiflow.families.transformer.training import build_classifier

    half_dir = tmp_path / "half"
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).half().save_pretrained(half_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(half_dir)
    assert AutoModelForSequenceClassification.from_pretrained(half_dir).dtype == torch.float16
    built = build_classifier(TrainParams(model_name=str(half_dir), device="cpu"), ["neg", "pos"])
    assert {p.dtype for p in built.model.parameters()} == {torch.float32}


def test_predict_proba_keeps_input_order_across_sorted_batches(tiny_model_dir: Path) -> None:
    from sentiflow.families.transformer.model import TransformerClassifier

    clf = TransformerClassifier.from_pretrained(str(tiny_model_dir), ["neg", "pos"], max_length=64)
    texts = ["short", "a much longer review " * 8, "medium length review here", "x", "another " * 20]
    one_by_one = np.vstack([clf.predict_proba([t]) for t in texts])
    batched = clf.predict_proba(texts, batch_size=2)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert clf.predict_proba([]).shape == (0, 2)
