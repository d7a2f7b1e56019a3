"""Timing shared by every benchmark section: interleaved samples of several cases, summarised as medians."""

import math
import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(cases: dict[str, Callable], repeats: int, warmup: int = 1, min_seconds: float = 0.2,
                     device: torch.device = torch.device("cpu"), settle_seconds: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call of every case: `repeats` interleaved samples each, in rotated order, after `warmup` calls.
    `settle_seconds` of sleep before each sample let the thread pools of the case before it (ONNX Runtime's and
    OpenVINO's spin after a call) go idle, so a case is not timed against its neighbour's spinning threads."""
    names = list(cases)
    calls = {}
    for name in names:
        start = time.perf_counter()
        for _ in range(warmup):
            cases[name]()
        synchronize(device)
        per_call = (time.perf_counter() - start) / max(warmup, 1)
        calls[name] = max(1, math.ceil(min_seconds / max(per_call, 1e-6)))
    samples = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            if settle_seconds:
                time.sleep(settle_seconds)
            start = time.perf_counter()
            for _ in range(calls[name]):
                cases[name]()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) / calls[name])
    return samples


def summarize(samples: list[float], images: int) -> dict:
    median = statistics.median(samples)
    return {"images_per_s": images / median, "median_s": median, "samples_s": samples}


# ------------------------------------------------------------------------------------------------------ inference
