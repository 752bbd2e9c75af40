"""How the work runs (device, precision, threads, memory allocator), kept apart from what is computed.

accelerator = make_accelerator(cfg.runtime)
with feature_autocast(accelerator, cfg.runtime):   # bf16 on CPUs that have it, for frozen inference
    feats = net(x)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_tuned = False


def tune_malloc() -> bool:
    """Keep freed tensor memory in the heap instead of returning it to the OS after every batch.

    glibc serves every allocation over 128 KiB (i.e. every activation) with mmap and unmaps it on free, so each
    forward pass pays page faults for fresh zeroed pages. Turning mmap off and raising the trim threshold to 1 GiB
    measured 2-2.5x faster CPU forward passes on this project's 2-core machine. No-op outside glibc.
    """
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return _tuned
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):
        ok = False
    _tuned = ok
    return ok


def set_threads(threads: int = 0) -> int:
    n = (
        threads or len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else (threads or os.cpu_count() or 1)
    )
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA GPU here. Use --device cpu or auto.")
    return device


def resolve_precision(mixed_precision: str, device: str) -> str:
    if mixed_precision != "auto":
        return mixed_precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"  # bf16 training on CPU is slower to converge and not faster for the backward pass


def make_accelerator(runtime):
    """An accelerate.Accelerator for these settings; the training loop only talks to it."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    device = resolve_device(runtime.device)
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision=resolve_precision(runtime.mixed_precision, device),
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True
        ),  # same seed -> same batch order, also on resume
        dynamo_backend="inductor"
        if runtime.compile
        else "no",  # torch.compile inside prepare(), undone by unwrap_model
    )


def cpu_bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def best_precision(device_type: str) -> str:
    """What `auto` runs frozen features, `predict` and `evaluate` at: the precision that gives fp32's answers.

    On a CPU that is fp32, even with AVX512-BF16: measured on the real data (benchmarks/precision.py, BENCHMARKS.md)
    bf16 changed 1.2-6% of top-1 answers (the bar is 0.5%), although its forward pass ran 1.8x faster; on an
    AVX2-only CPU bf16 is emulated, 10-20x slower. On a GPU, bf16 (fp16 before Ampere), as training's AMP uses.
    `--feature-precision bf16` / `--precision bf16` still choose it; training and prediction then agree with each
    other, since `linear` is evaluated on its cached features at that precision."""
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def feature_precision(runtime, device_type: str) -> str:
    """Precision of frozen feature extraction (the cached features `linear` trains and is evaluated on)."""
    return inference_precision(runtime.feature_precision, device_type)


def inference_precision(requested: str, device_type: str) -> str:
    """`requested` unless "auto"; "auto" is `best_precision`."""
    return best_precision(device_type) if requested == "auto" else requested


def autocast_for(precision: str, device_type: str):
    """A context for inference at `precision`; a do-nothing context for fp32."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device_type, dtype=dtype)
    return contextlib.nullcontext()


def memory_format(runtime) -> torch.memory_format:
    return torch.channels_last if runtime.channels_last else torch.preserve_format
