"""Multi-GPU training: the torchrun command, which process is rank 0, and the folder every rank shares.

``gpus > 1`` runs the training entrypoint under torchrun (``python -m torch.distributed.run``, the same
program as the ``torchrun`` script, found through the interpreter so no PATH is assumed), one process per GPU;
Hugging Face ``Trainer`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and wraps the
model in DDP. Every rank trains; only rank 0 talks to MLflow (the run, its metrics, the registry version)
and writes the result JSON, so N processes still make one run and one version. The pod
(``sentiflow.orchestration.pod``) and the local entrypoint (``sentiflow.train.cli``) build the command here.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The training entrypoint's module: ``python -m sentiflow.train``.
ENTRYPOINT_MODULE = "sentiflow.train"


def entrypoint_command(gpus: int = 1, python: str = "python") -> list[str]:
    """The command that runs the training entrypoint on ``gpus`` devices (arguments follow it).

    ``--standalone``: a single-node rendezvous on a free local port, so two trainings on one machine (or a
    test suite) never collide on a fixed master port.
    """
    if gpus <= 1:
        return [python, "-m", ENTRYPOINT_MODULE]
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={gpus}",
        "-m",
        ENTRYPOINT_MODULE,
    ]


def device_shortfall(gpus: int, device: str) -> str | None:
    """Why ``gpus`` processes cannot each have a GPU here, or None. CPU processes (gloo) need none.

    Checked before torchrun starts, so a run asking for more GPUs than its machine (or pod, whose count is
    ``SENTIFLOW_TRAINER_POD_GPU_COUNT``) has fails at once with a message, not in N crashing processes.
    """
    import torch

    if device == "cpu" or gpus <= 1:
        return None
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto" and visible == 0:
        return None  # auto on a machine without a GPU trains on CPU
    if visible < gpus:
        return (
            f"gpus={gpus} but {visible} CUDA GPU(s) are visible here; a Kubernetes pod gets its GPU count "
            "from SENTIFLOW_TRAINER_POD_GPU_COUNT"
        )
    return None


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0, or a process that is not part of a distributed run."""
    return rank() == 0


def under_torchrun() -> bool:
    """True inside a process torchrun started (it sets ``LOCAL_RANK`` and ``TORCHELASTIC_RUN_ID``)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def terminate_as_exception() -> None:
    """SIGTERM raises ``SystemExit`` instead of ending the process on the spot.

    torchrun sends SIGTERM to every rank when one fails; rank 0 then unwinds through ``training_run``, so
    its MLflow run ends FAILED with an ``error`` tag instead of staying RUNNING forever.
    """

    def _raise(signum: int, frame: Any) -> None:
        raise SystemExit(f"terminated by signal {signum} (another training process failed)")

    signal.signal(signal.SIGTERM, _raise)


def _process_group() -> Any:
    """``torch.distributed`` when a process group is up (Trainer's arguments start it), else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


@contextmanager
def shared_workdir(prefix: str) -> Iterator[str]:
    """A temporary folder that every rank on this node sees under the same path; rank 0 removes it.

    Trainer saves checkpoints from rank 0 only and every rank loads the best one at the end, so their
    ``output_dir`` must be one folder; the tokenized Arrow cache is written there once too. Call it after
    the process group is up (``TrainingArguments`` starts it): rank 0 creates the folder and broadcasts its
    path. After a success, removal waits at a barrier until every rank is done with it; after a failure it
    does not (the other ranks may be inside a collective that will never complete; torchrun ends them).
    """
    dist = _process_group()
    path = tempfile.mkdtemp(prefix=prefix) if is_main_process() else None
    if dist is not None:
        holder = [path]
        dist.broadcast_object_list(holder, src=0)
        path = holder[0]
    if path is None:
        raise RuntimeError("rank 0 did not share its working folder")
    try:
        yield path
        if dist is not None:
            dist.barrier()
    finally:
        if is_main_process():
            shutil.rmtree(path, ignore_errors=True)
