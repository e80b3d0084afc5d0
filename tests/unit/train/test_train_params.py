"""Parameter models: names agree with ``sentiflow.names`` and bad values are refused with the field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sentiflow import names
from sentiflow.families.tfidf.params import BaselineParams
from sentiflow.families.transformer.params import TrainParams
from sentiflow.train.metrics import classification_metrics

NAME_VALUES = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}


@pytest.mark.parametrize("model", [TrainParams, BaselineParams])
def test_every_parameter_name_is_defined_in_names(model) -> None:
    assert set(model.model_fields) <= NAME_VALUES


def test_defaults_are_the_hub_model_and_hf_names() -> None:
    params = TrainParams()
    assert params.model_name == "prajjwal1/bert-tiny"
    assert params.truncation == "head" and params.bf16 == "auto"


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ValidationError, match="learning_rate"):
        TrainParams(learning_rate=-1)
    with pytest.raises(ValidationError, match="truncation"):
        TrainParams(truncation="middle")
    with pytest.raises(ValidationError, match="num_train_epoch"):
        TrainParams(num_train_epoch=3)  # typo: extra keys are refused
    assert TrainParams(bf16=True).bf16 == "on"


def test_metrics_binary_and_multiclass() -> None:
    import numpy as np

    binary = classification_metrics(
        "test", np.array([0, 1, 1, 0]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    )
    assert binary["test_accuracy"] == 0.75 and binary["test_auc"] == 1.0
    assert set(binary) == set(names.TEST_METRICS)
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    multi = classification_metrics("val", np.array([0, 1, 2]), probs)
    assert multi[names.VAL_F1] == 1.0 and multi[names.VAL_AUC] == 1.0
    single_class = classification_metrics("val", np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]))
    assert names.VAL_AUC not in single_class  # undefined, not NaN


def test_loss_of_a_confident_model_is_finite_and_warning_free() -> None:
    import warnings

    import numpy as np

    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]], dtype=np.float32)  # exact 0 and 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn warns when rows do not sum to one
        metrics = classification_metrics("val", np.array([0, 1, 1]), probs)
    assert 0 < metrics["val_loss"] < 0.2
