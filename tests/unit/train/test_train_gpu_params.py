"""The GPU parameters and the ``gpu_weekly`` preset: one definition, harmless on CPU, caller's values win."""

from __future__ import annotations

import pytest

from sentiflow.families.transformer.params import PRESETS, TrainParams


def test_gpu_weekly_preset_fills_the_fields_left_at_their_default() -> None:
    weekly = TrainParams(preset="gpu_weekly")
    assert weekly.max_length == 512 and weekly.truncation == "head_tail"
    assert weekly.num_train_epochs == 3 and weekly.warmup_ratio > 0 and weekly.early_stopping_patience == 1
    assert weekly.train_subset_size is None  # the full train split
    for name, value in PRESETS["gpu_weekly"].items():
        assert getattr(weekly, name) == value, name
    # a value the caller changed wins; re-validating the dump (the pod's --params-json) changes nothing
    mine = TrainParams(preset="gpu_weekly", max_length=384, learning_rate=3e-5)
    assert (mine.max_length, mine.learning_rate, mine.truncation) == (384, 3e-5, "head_tail")
    assert TrainParams.model_validate(mine.model_dump()) == mine
    assert TrainParams.model_validate_json(weekly.model_dump_json()) == weekly


def test_the_trigger_form_which_sends_every_field_gets_the_preset_too() -> None:
    form = TrainParams().model_dump()  # what a trigger with untouched fields sends
    weekly = TrainParams.model_validate({**form, "preset": "gpu_weekly"})
    assert weekly == TrainParams(preset="gpu_weekly")


def test_presets_hold_only_fields_and_valid_values() -> None:
    for name, values in PRESETS.items():
        assert set(values) <= set(TrainParams.model_fields), name
        TrainParams.model_validate(values)  # each value passes the field's own bounds
    assert set(PRESETS) == set(TrainParams.model_fields["preset"].annotation.__args__) - {"none"}


def test_the_preset_is_selected_by_a_flags_string() -> None:
    params = TrainParams.model_validate({"preset": "gpu_weekly", "gpus": "2"})  # as the CLI's flags give them
    assert params.preset == "gpu_weekly" and params.max_length == 512 and params.gpus == 2


def test_on_cpu_the_gpu_settings_do_nothing_harmful(tmp_path) -> None:
    from sentiflow.families.transformer.model import resolve_tf32
    from sentiflow.families.transformer.training import training_arguments

    weekly = TrainParams(preset="gpu_weekly", device="cpu")
    args = training_arguments(weekly, str(tmp_path), device="cpu")
    assert args.dataloader_num_workers == 4  # the preset asks for them; auto would be 0 on CPU
    assert not args.dataloader_pin_memory and not args.tf32 and not args.torch_compile
    auto = training_arguments(TrainParams(device="cpu"), str(tmp_path), device="cpu")
    assert auto.dataloader_num_workers == 0 and not auto.dataloader_persistent_workers
    assert auto.train_sampling_strategy == "group_by_length"
    assert resolve_tf32("auto", "cpu") is False
    with pytest.raises(ValueError, match="Ampere"):
        resolve_tf32("on", "cpu")
    assert TrainParams(torch_compile=True, dataloader_pin_memory=False).torch_compile == "on"
