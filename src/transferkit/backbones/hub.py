"""One message for weights that cannot be fetched: the user learns why and which choices work offline."""

from __future__ import annotations

from ..errors import TransferkitError


def offline_error(name: str, cause: BaseException) -> TransferkitError:
    from .registry import list_backbones

    return TransferkitError(
        f"Could not get the pretrained weights of '{name}' ({type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else 'no detail'}). "
        "They are downloaded from the model's hub on first use, which needs a network connection (or a filled cache). "
        f"Offline choices: the built-in backbones {', '.join(list_backbones())} (weights ship with transferkit's dependencies), "
        f"a local weights file with --backbone file:PATH --arch {name}, or this architecture from random weights "
        "with --strategy scratch."
    )


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """A quick TCP check, so that an offline machine gets the message in seconds, not after a minute of retries."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def cached_hf_file(repo_id: str, filenames=("model.safetensors", "pytorch_model.bin")) -> str | None:
    """Path of already-downloaded weights in the Hugging Face cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in filenames:
        path = try_to_load_from_cache(repo_id, name)
        if isinstance(path, str):
            return path
    return None
