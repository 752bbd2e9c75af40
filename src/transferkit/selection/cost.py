"""What `auto`'s candidates cost, estimated from the networks' work instead of timed: the same data and command make
the same choice on a quiet machine and on one whose cores something else is using.

    gflops = forward_gflops(net, 224)        # 0.77 for efficientnet_lite0: counted once, on one random image
    estimate_seconds(gflops * 400, "cpu")    # 4.6 s: 400 images x 0.77 GFLOP / 67.5 GFLOP/s

Work is the FLOPs of one forward pass of one image as `torch.utils.flop_counter` counts them (matrix products and
convolutions, grouped and depthwise ones included, 2 FLOPs per multiply-add; element-wise ops are left out). It
follows the architecture and the input size alone, so it is the same on every machine, in every process of a launched
run, and cached features or not. Seconds are that work over a nominal throughput per device type (NOMINAL_FLOPS): an
estimate of what the work costs on this project's reference machine, never a clock read mid-run. Wall-clock seconds
are still measured and shown next to the estimates (`advise`'s table, `rank`'s ms/img); they decide nothing.

How well work predicts time (efficientnet_lite0, batch 32, fp32, 2 cores): 107 / 348 / 1282 img/s measured at
224 / 128 / 64 px against 88 / 269 / 1077 predicted; at 32 px per-image overheads dominate (2,500 measured,
4,300 predicted). Good enough to rank candidates and to keep to a budget of minutes.
"""

from __future__ import annotations

import weakref

# Nominal forward throughput, FLOP/s, per device type: what turns work into seconds.
# CPU: efficientnet_lite0 at 224 px is 0.768 GFLOP per image (counted here) and runs its forward pass at 87.9 img/s
# on this project's 2-core benchmark machine (BENCHMARKS.md, "Jobs": tensors in memory, fp32, batch 32):
# 0.768e9 FLOP x 87.9 img/s = 67.5e9 FLOP/s. A machine with more cores only finishes sooner than estimated.
CPU_FLOPS = 67.5e9
# GPU (device cuda): an assumption, not yet a measurement (no GPU was lent when this was written): 40x the CPU's,
# 2.7e12 FLOP/s, i.e. lite0 at 224 px at ~3,500 img/s. Depthwise-convolution networks at batch 32 use a few percent
# of a datacenter GPU's 60+ TFLOP/s (fp32), so this stays on the safe side of an A100/H100; replace it with
# `benchmarks/gpu_check.py`'s measured forward img/s x 0.768e9 once BENCHMARKS.md has one.
GPU_FLOPS = 40 * CPU_FLOPS
NOMINAL_FLOPS = {"cpu": CPU_FLOPS, "cuda": GPU_FLOPS}  # other devices (mps, ...) are reckoned at the CPU's

_counted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> {input side: GFLOPs}


def forward_gflops(net, size: int) -> float:
    """GFLOPs of `net`'s forward pass on one `size` x `size` RGB image, counted on random input on the device the
    net is on (a few hundredths of a second); counted once per net and size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    sizes = _counted.setdefault(net, {})
    if size not in sizes:
        param = next(net.parameters(), None)
        x = torch.randn(1, 3, size, size, device=param.device if param is not None else "cpu")
        was_training = net.training
        net.eval()  # BatchNorm must not learn statistics from the random image
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                net(x)
        finally:
            net.train(was_training)
        sizes[size] = counter.get_total_flops() / 1e9
    return sizes[size]


def nominal_flops(device: str) -> float:
    """FLOP/s the estimates assume on `device` ("cpu", "cuda", "cuda:1", ... or "auto": what it resolves to)."""
    if device == "auto":
        from ..engine.runtime import resolve_device

        device = resolve_device(device)
    return NOMINAL_FLOPS.get(device.split(":")[0], CPU_FLOPS)


def estimate_seconds(gflops: float, device: str) -> float:
    """Seconds `gflops` of forward work is reckoned to take on `device` (see NOMINAL_FLOPS)."""
    return gflops * 1e9 / nominal_flops(device)


def duration(seconds: float) -> str:
    """'0.0056 s', '3.4 s', '12.5 min': estimates of tiny test data stay readable."""
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2g} s"
