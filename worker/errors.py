"""Errors a job can end with; each maps to a CLI exit code and an HTTP status."""

from __future__ import annotations

import re


class VinrError(Exception):
    """Base class: a clear one-line message for the user."""

    exit_code = 1


class InputError(VinrError):
    """The input cannot be read: missing, corrupt, truncated, or not a video."""

    exit_code = 3


class NoVideoStreamError(InputError):
    """The input is a media file without a video stream."""

    exit_code = 4


class ParameterError(VinrError):
    """A requested parameter (scale, fps, size, codec, ...) is invalid."""

    exit_code = 2


class OutputError(VinrError):
    """The output cannot be written (folder missing, no permission, unsupported container)."""

    exit_code = 5


class CanceledError(VinrError):
    """The job was canceled while running."""

    exit_code = 130


WHERE = re.compile(r"^(?:[A-Za-z_][\w.]*: )+")
"""The ``function: `` prefixes our messages start with (they say where, for logs and the CLI)."""


def person_text(message: str) -> str:
    """A message as a person reads it over HTTP: without the leading names of the functions that raised it."""
    return WHERE.sub("", message.strip()) or message
