"""Errors meant for people: what was wrong, where, what to do, and the valid choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TransferkitError(Exception):
    """A problem the user can fix. The CLI prints its message without a traceback and exits with status 2."""


class DataError(TransferkitError):
    """The data cannot be used as given (layout, labels, files)."""


class ConfigError(TransferkitError):
    """An option has a value that is not allowed."""


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:  # fall back to substring matches ("lite" -> every efficientnet_lite*)
        found = [c for c in choices if name.lower() in c.lower()][:n]
    return found


def unknown_choice(what: str, value: str, choices: Iterable[str], hint: str = "") -> ConfigError:
    choices = list(choices)
    near = close_matches(value, choices)
    msg = f"Unknown {what} '{value}'."
    if near:
        msg += f" Did you mean: {', '.join(near)}?"
    if len(choices) <= 20:
        msg += f" Valid choices: {', '.join(choices)}."
    if hint:
        msg += " " + hint
    return ConfigError(msg)


def needs_serve_extra(command: str, error: ImportError) -> ConfigError:
    """The error of a command whose web stack is not installed (`serve`, `label`, `review --serve`)."""
    return ConfigError(
        f"`{command}` needs FastAPI and uvicorn ({error.name} is missing): pip install 'transferkit[serve]'."
    )
