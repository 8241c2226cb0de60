"""Timing as the contest does: flashinfer's `bench_gpu_time_with_cupti` (span from the first
kernel's start to the last kernel's end of each call, L2 flushed before each call, no CUDA
graph), median. Without CUPTI it falls back to CUDA events with an L2 flush, and says so."""
from __future__ import annotations

import statistics
import warnings
from typing import Any, Callable, Sequence


def cupti_available() -> bool:
    try:
        from importlib.metadata import version

        from cupti import cupti  # noqa: F401

        return int(version("cupti-python").split(".")[0]) >= 13
    except Exception:
        return False


def method() -> str:
    return "cupti" if cupti_available() else "cuda-events (CUPTI unavailable)"


def time_us(fn: Callable, args: Sequence[Any], warmup: int = 10, iters: int = 50) -> float:
    """Median latency of fn(*args) in microseconds, cold L2."""
    from flashinfer.testing import bench_gpu_time_with_cupti

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CUPTI fallback warning: method() reports it once
        times_ms = bench_gpu_time_with_cupti(
            fn, dry_run_iters=warmup, repeat_iters=iters, cold_l2_cache=True,
            use_cuda_graph=False, input_args=tuple(args))
    return statistics.median(times_ms) * 1e3
