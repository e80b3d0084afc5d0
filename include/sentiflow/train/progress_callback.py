"""A Hugging Face ``TrainerCallback`` that logs training progress every few seconds.

``disable_tqdm`` is on (tqdm bars garble log files), so without this a fine-tune is silent between epochs.
Each line (``sentiflow.progress`` format) says step/total, samples/s, elapsed and ETA; it goes to the
training process's log, which the local backend forwards into the Airflow task log line by line (and the
pod's log is the task log), so the Airflow UI and ``make demo`` show it moving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sentiflow.progress import PROGRESS_MARK, ProgressReporter, format_duration

if TYPE_CHECKING:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

log = logging.getLogger(__name__)

#: Seconds between two progress lines; evaluation and the end always log.
DEFAULT_EVERY_S = 5.0


def progress_callback(
    every_s: float = DEFAULT_EVERY_S,
    emit: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TrainerCallback:
    """A ``TrainerCallback`` instance (transformers imported only when training)."""
    from transformers import TrainerCallback

    say: Callable[[str], None] = emit or log.info

    class TrainingProgress(TrainerCallback):
        def __init__(self) -> None:
            self.reporter: ProgressReporter | None = None
            self.samples_per_step = 1

        def on_train_begin(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> None:
            self.samples_per_step = max(1, args.train_batch_size * args.gradient_accumulation_steps)
            self.reporter = ProgressReporter(
                "train",
                int(state.max_steps) or None,
                say,
                every_s=every_s,
                unit="samples",
                rate_of=lambda steps: steps * self.samples_per_step,
                clock=clock,
            )
            say(
                f"{PROGRESS_MARK} train: {state.max_steps} steps of {self.samples_per_step} samples "
                f"over {args.num_train_epochs:g} epoch(s)"
            )

        def on_step_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> None:
            if self.reporter is not None:
                self.reporter.update(int(state.global_step))

        def on_epoch_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> None:
            if self.reporter is not None:
                elapsed = self.reporter.clock() - self.reporter.started
                say(
                    f"{PROGRESS_MARK} train: epoch {state.epoch:.0f} done at step {state.global_step}/"
                    f"{state.max_steps} after {format_duration(elapsed)}; evaluating on the validation split"
                )

    return TrainingProgress()
