"""The package's one error type and the kinds of it a caller may want to tell apart.

``BitnetError`` is both what the engine reports (its own message, from ``bitnet_last_error``) and
what the scripts show the user: it is a ``click.ClickException``, so a script's ``main`` prints it
as one line and exits with code 1, and a ``RuntimeError``, so library callers catch it like any
run-time failure. The subclasses say which kind of failure it was; their messages name what was
found, what was expected and the way out.
"""

from __future__ import annotations

import sys

import click


class BitnetError(click.ClickException, RuntimeError):
    """A failure of the engine or of a step (bad input, a failed build or conversion)."""

    def show(self, file=None) -> None:  # one line, no "Error:" prefix from click
        click.echo(f"error: {self.format_message()}", file=file or sys.stderr)


class ModelLoadError(BitnetError):
    """A model that cannot be loaded: a missing path, a file that is not a valid GGUF, or a
    checkpoint that cannot be converted."""


class InvalidArgumentError(BitnetError, ValueError):
    """An argument outside what the call accepts (a negative max_new_tokens, an unknown option)."""


class ContextLengthError(BitnetError):
    """A prompt or conversation that does not fit in the model's context."""
