"""GPU utilisation and memory sampled through the fit (NVML), so a run records whether its GPU was busy.

A GPU that waits on the input pipeline trains at a fraction of its speed, and nothing else shows it.
A figure that cheap to take belongs in every run, not only in a benchmark. A background thread reads every
visible GPU's utilisation and used memory every ``interval_s`` through NVML (``pynvml``, from
``nvidia-ml-py``, a dependency of the ``train`` extra); on a machine without a GPU there is no reader, and
the summary says "no GPU" and adds no metrics. The sampler takes its reading function as an argument, so
its logic is tested with a fake one on machines without a GPU.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from sentiflow.names import GPU_COUNT, GPU_MEMORY_USED_PEAK_MIB, GPU_UTILIZATION_MEAN_PCT

log = logging.getLogger(__name__)

#: Seconds between two readings: NVML's utilisation counter itself averages over 1/6 s to 1 s.
DEFAULT_INTERVAL_S = 0.5
MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment: percent of the last sample period a kernel ran, and memory in use."""

    utilization_pct: float
    memory_used_mib: float


#: Returns one reading per watched GPU; raises when the GPU cannot be read any more.
Reader = Callable[[], list[GpuReading]]


@dataclass
class GpuSummary:
    """What the fit's GPUs did: means and peaks over every sample, or why there is nothing to report."""

    available: bool
    reason: str = ""
    gpu_count: int = 0
    samples: int = 0
    utilization_mean_pct: float | None = None
    memory_used_peak_mib: float | None = None
    errors: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The run's GPU metrics (``sentiflow.names``); empty without a GPU or without a single sample."""
        if not self.available or not self.samples:
            return {}
        return {
            GPU_UTILIZATION_MEAN_PCT: float(self.utilization_mean_pct or 0.0),
            GPU_MEMORY_USED_PEAK_MIB: float(self.memory_used_peak_mib or 0.0),
            GPU_COUNT: float(self.gpu_count),
        }

    def describe(self) -> str:
        if not self.available:
            return f"no GPU utilisation recorded: {self.reason}"
        if not self.samples:
            return f"GPU utilisation: no sample taken ({'; '.join(self.errors) or 'the fit was too short'})"
        return (
            f"GPU utilisation over the fit: mean {self.utilization_mean_pct:.1f}% on {self.gpu_count} "
            f"GPU(s), peak memory {self.memory_used_peak_mib:.0f} MiB, {self.samples} samples"
        )


class GpuSampler:
    """Samples ``read`` on a daemon thread between ``__enter__`` and ``__exit__``; never fails the fit.

    Utilisation is averaged over GPUs and samples; memory is the highest any one GPU used at any sample.
    A reader that raises stops the sampling (the error is kept in the summary), not the training.
    """

    def __init__(
        self, read: Reader | None, *, interval_s: float = DEFAULT_INTERVAL_S, reason: str = ""
    ) -> None:
        self.read = read
        self.interval_s = interval_s
        self.reason = reason or ("no reader" if read is None else "")
        self._readings: list[list[GpuReading]] = []
        self._errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_this_machine(cls, interval_s: float = DEFAULT_INTERVAL_S) -> GpuSampler:
        read, reason = nvml_reader()
        return cls(read, interval_s=interval_s, reason=f"no GPU ({reason})" if read is None else "")

    def sample_once(self) -> bool:
        """Take one reading; False (and the error kept) when the reader failed."""
        if self.read is None:
            return False
        try:
            readings = self.read()
        except Exception as exc:  # the GPU went away, NVML broke: keep what we have, stop sampling
            self._errors.append(f"{exc.__class__.__name__}: {exc}")
            return False
        if readings:
            self._readings.append(list(readings))
        return True

    def _loop(self) -> None:
        while self.sample_once() and not self._stop.wait(self.interval_s):
            pass

    def __enter__(self) -> GpuSampler:
        if self.read is not None:
            self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.read is not None and exc_type is None:
            self.sample_once()  # a fit shorter than one interval still gets a reading at its end

    def summary(self) -> GpuSummary:
        if self.read is None:
            return GpuSummary(available=False, reason=self.reason)
        rows = self._readings
        if not rows:
            return GpuSummary(available=True, errors=list(self._errors))
        utilization = [r.utilization_pct for row in rows for r in row]
        return GpuSummary(
            available=True,
            gpu_count=max(len(row) for row in rows),
            samples=len(rows),
            utilization_mean_pct=sum(utilization) / len(utilization),
            memory_used_peak_mib=max(r.memory_used_mib for row in rows for r in row),
            errors=list(self._errors),
        )


# --- readers ------------------------------------------------------------------------------------------
def visible_indexes(count: int, visible: str | None) -> list[int | str]:
    """NVML devices this process may use: ``CUDA_VISIBLE_DEVICES`` as indexes or UUIDs, else all ``count``.

    NVML numbers every GPU of the machine and ignores ``CUDA_VISIBLE_DEVICES``, so without this a job given
    GPU 3 of 8 would report the whole machine.
    """
    if visible is None or not visible.strip():
        return list(range(count))
    out: list[int | str] = []
    for item in (part.strip() for part in visible.split(",")):
        if not item:
            continue
        out.append(int(item) if item.isdigit() else item)
    return out


def nvml_reader() -> tuple[Reader | None, str]:
    """A reader over NVML's visible GPUs, or None and why (no bindings, no driver, no GPU)."""
    try:
        import pynvml
    except ImportError:
        return None, "pynvml (nvidia-ml-py) is not installed"
    try:
        pynvml.nvmlInit()
        handles = []
        for index in visible_indexes(pynvml.nvmlDeviceGetCount(), os.environ.get("CUDA_VISIBLE_DEVICES")):
            if isinstance(index, int):
                handles.append(pynvml.nvmlDeviceGetHandleByIndex(index))
            else:
                handles.append(pynvml.nvmlDeviceGetHandleByUUID(index))
    except pynvml.NVMLError as exc:
        return None, f"NVML: {exc}"
    if not handles:
        return None, "NVML sees no GPU"

    def read() -> list[GpuReading]:
        return [
            GpuReading(
                utilization_pct=float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                memory_used_mib=pynvml.nvmlDeviceGetMemoryInfo(h).used / MIB,
            )
            for h in handles
        ]

    return read, ""
