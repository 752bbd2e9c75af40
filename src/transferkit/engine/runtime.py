"""How the work runs (device, precision, threads, memory allocator, processes), kept apart from what is computed.

accelerator = make_accelerator(cfg.runtime)
with autocast_for(feature_precision(cfg.runtime, "cpu"), "cpu"):   # bf16 where asked for, for frozen inference
    feats = net(x)
procs = processes(cfg.runtime.device)   # OneProcess() for a plain run; the launched group under torchrun
run = procs.on_main(lambda: RunDir.create(...))   # made by the main process, the same path on every process
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
    """`threads` torch threads; 0: the cores this process may use, shared among the processes a launcher started on
    this machine (2 processes on 16 cores: 8 each), so that N processes do not oversubscribe the cores N-fold."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, threads or cores // local_processes()))
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


def make_accelerator(runtime, grad_accum: int = 1, data_seed: int | None = None):
    """An accelerate.Accelerator for these settings; the training loop only talks to it. Under a launcher it joins
    the process group `processes()` set up (one PartialState per process). data_seed: the batch order's seed, the
    same on every process (None: torch's initial seed, which `set_seed(cfg.train.seed)` made the same number)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    device = resolve_device(runtime.device)
    processes(runtime.device)  # the process group first, on the device the run asked for
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision=resolve_precision(runtime.mixed_precision, device),
        gradient_accumulation_steps=grad_accum,  # accelerator.accumulate() steps the optimizer every K-th batch
        # same seed -> same batch order, also on resume; and on every process, which each take their share of it
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=data_seed),
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


# ---- processes: one for a plain run, N under `torchrun` / `accelerate launch` ------------------------------------


def launched_processes() -> int:
    """How many processes a launcher started for this run (torchrun and accelerate launch set WORLD_SIZE in each);
    1 for a plain `transferkit train`."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def local_processes() -> int:
    """How many of them run on this machine (LOCAL_WORLD_SIZE, set by torchrun); 1 for a plain run."""
    return int(os.environ.get("LOCAL_WORLD_SIZE") or 1)


def refuse_multiprocess(command: str, why: str) -> None:
    """A clear error for commands that run on one process, instead of N copies racing over the same files."""
    if launched_processes() > 1:
        from ..errors import TransferkitError

        raise TransferkitError(
            f"`transferkit {command}` runs on one process ({why}), but this is one of {launched_processes()} "
            f"processes started by torchrun or accelerate launch. Run it without the launcher: transferkit {command} ..."
        )


class OneProcess:
    """The processes of a plain run: one, the main one. Every collective below is the identity, so code written
    for N processes runs unchanged (and exactly as before) on one."""

    num_processes, process_index, is_main_process = 1, 0, True

    def on_main(self, fn):
        """fn() on the main process; every process gets its result (or its error)."""
        return fn()

    def from_main(self, value):
        """The main process's `value` on every process."""
        return value

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds on every process (e.g. a cache hit: extract unless all of them have the entry)."""
        return flag

    def shard(self, n: int) -> tuple[int, int]:
        """This process's contiguous share [lo, hi) of n items."""
        return 0, n

    def gather_rows(self, rows):
        """Every process's `rows` (a tensor, its share from `shard`) concatenated in process order: all n rows."""
        return rows

    def mean(self, values: list[float]) -> list[float]:
        """The mean over processes of each value (e.g. each process's own training loss)."""
        return values

    def wait(self) -> None:
        """Until every process has come here."""


class Processes(OneProcess):
    """The processes a launcher started, through accelerate's PartialState (the process group it joined: gloo on
    CPUs, NCCL on GPUs). Process 0 is the main one: it alone writes the run directory, caches, reports and logs."""

    def __init__(self, state):
        self.state = state
        self.num_processes, self.process_index = state.num_processes, state.process_index
        self.is_main_process = state.is_main_process

    def on_main(self, fn):
        from accelerate.utils import broadcast_object_list

        box = [None, None]  # (result, error message): an error on the main process must not leave the others waiting
        error = None
        if self.is_main_process:
            try:
                box[0] = fn()
            except Exception as e:  # noqa: BLE001 - re-raised here as it was, and named on the other processes
                error, box[1] = e, f"{type(e).__name__}: {e}"
        broadcast_object_list(box, from_process=0)
        if error is not None:
            raise error
        if box[1] is not None:
            from ..errors import TransferkitError

            raise TransferkitError(f"The main process stopped: {box[1]}")
        return box[0]

    def from_main(self, value):
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def all_true(self, flag: bool) -> bool:
        from accelerate.utils import gather_object

        return all(gather_object([bool(flag)]))

    def shard(self, n: int) -> tuple[int, int]:
        chunk = -(-n // self.num_processes)  # 397 images on 2 processes: 199 + 198
        lo = min(n, self.process_index * chunk)
        return lo, min(n, lo + chunk)

    def gather_rows(self, rows):
        from accelerate.utils import gather_object

        parts = [p for p in gather_object([rows.cpu()]) if p.numel()]  # a process with no share sends no rows
        return torch.cat(parts) if parts else rows

    def mean(self, values: list[float]) -> list[float]:
        from accelerate.utils import gather_object

        every = gather_object([list(values)])
        return [sum(v) / len(every) for v in zip(*every)]

    def wait(self) -> None:
        self.state.wait_for_everyone()


_processes: OneProcess | None = None


def processes(device: str = "auto") -> OneProcess:
    """This run's processes: `OneProcess()` unless a launcher started several, then `Processes` joined to their
    group on `device`'s backend (the first call decides; `make_accelerator` later joins the same group)."""
    global _processes
    if _processes is None:
        if launched_processes() == 1:
            _processes = OneProcess()
        else:
            from accelerate import PartialState

            _processes = Processes(PartialState(cpu=resolve_device(device) == "cpu"))
    return _processes
