"""One message for weights that cannot be fetched: the user learns why and which choices work offline."""

from __future__ import annotations

from ..errors import TransferkitError


def offline_error(name: str, cause: BaseException) -> TransferkitError:
    from .registry import list_backbones

    return TransferkitError(
        f"Could not get the pretrained weights of '{name}' ({type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else 'no detail'}). "
        "They are downloaded from the model's hub on first use, which needs a network connection (or a filled cache). "
        f"Offline choices: the built-in backbones {', '.join(list_backbones())} (weights ship with transferkit's dependencies), "
        f"or a local weights file with --backbone file:PATH --arch {name}."
    )
