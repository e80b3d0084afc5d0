"""The GPU sampler's logic with fake readings (the part of GPU monitoring that needs no GPU to check).

A real NVML reading needs a GPU; everything around it (means, peaks, a reader that fails mid-fit, the
"no GPU" result on CPU, ``CUDA_VISIBLE_DEVICES``) is tested here with readers we
control.
"""

from __future__ import annotations

import threading

from sentiflow.names import GPU_COUNT, GPU_MEMORY_USED_PEAK_MIB, GPU_UTILIZATION_MEAN_PCT
from sentiflow.train.gpu_monitor import (
    GpuReading,
    GpuSampler,
    nvml_reader,
    visible_indexes,
)


def test_mean_utilisation_over_gpus_and_samples_and_peak_memory_of_any_gpu() -> None:
    script = iter(
        [
            [GpuReading(10, 1000), GpuReading(30, 900)],
            [GpuReading(90, 3000), GpuReading(70, 2500)],
        ]
    )
    sampler = GpuSampler(lambda: next(script))
    assert sampler.sample_once() and sampler.sample_once()
    summary = sampler.summary()
    assert summary.available and summary.samples == 2 and summary.gpu_count == 2
    assert summary.metrics() == {
        GPU_UTILIZATION_MEAN_PCT: 50.0,
        GPU_MEMORY_USED_PEAK_MIB: 3000.0,
        GPU_COUNT: 2.0,
    }
    assert "mean 50.0%" in summary.describe()


def test_samples_on_a_thread_through_the_block_and_once_more_at_its_end() -> None:
    calls = threading.Semaphore(0)

    def read() -> list[GpuReading]:
        calls.release()
        return [GpuReading(80, 512)]

    with GpuSampler(read, interval_s=0.01) as sampler:
        for _ in range(3):  # the fit: at least three readings taken while it runs
            assert calls.acquire(timeout=10)
    summary = sampler.summary()
    assert summary.samples >= 4  # three during the block, one at its end
    assert summary.metrics()[GPU_UTILIZATION_MEAN_PCT] == 80.0


def test_a_reader_that_fails_stops_sampling_but_keeps_what_it_had() -> None:
    readings = iter([[GpuReading(40, 100)]])

    def read() -> list[GpuReading]:
        try:
            return next(readings)
        except StopIteration:
            raise RuntimeError("GPU is lost") from None

    with GpuSampler(read, interval_s=0.01) as sampler:
        pass
    summary = sampler.summary()
    assert summary.samples == 1 and summary.metrics()[GPU_UTILIZATION_MEAN_PCT] == 40.0
    assert any("GPU is lost" in e for e in summary.errors)


def test_without_a_gpu_the_sampler_is_a_no_op_that_says_so() -> None:
    with GpuSampler(None, reason="no GPU (NVML: driver not loaded)") as sampler:
        pass
    summary = sampler.summary()
    assert not summary.available and summary.metrics() == {}
    assert summary.describe() == "no GPU utilisation recorded: no GPU (NVML: driver not loaded)"


def test_this_machine_without_a_gpu_gets_no_reader_and_a_reason() -> None:
    import torch

    if torch.cuda.is_available():  # pragma: no cover - the CPU suite's machines have none
        return
    read, _ = nvml_reader()
    sampler = GpuSampler.for_this_machine()
    assert read is None and sampler.reason.startswith("no GPU (")
    assert sampler.summary().metrics() == {}


def test_visible_devices() -> None:
    assert visible_indexes(4, None) == [0, 1, 2, 3]
    assert visible_indexes(4, "2,3") == [2, 3]
    assert visible_indexes(8, "GPU-1234abcd") == ["GPU-1234abcd"]
