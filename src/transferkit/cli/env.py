"""`transferkit env`: versions and hardware, for bug reports."""

from __future__ import annotations

import typer


def env() -> None:
    """Print library versions, CPU/GPU and the runtime settings transferkit would use."""
    import os
    import platform

    import torch

    from ..bundle import versions
    from ..engine.runtime import cpu_bf16_supported

    print(f"python {platform.python_version()} on {platform.platform()}")
    for k, v in versions().items():
        print(f"{k} {v}")
    print(
        f"cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"bf16 on cpu {'yes' if cpu_bf16_supported() else 'no'}"
    )
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"cuda:{i} {torch.cuda.get_device_name(i)}")
    else:
        print("cuda: none")


def register(app: typer.Typer) -> None:
    app.command()(env)
