"""Errors that are the user's to fix (a bad manifest line, an unknown profile key, a missing input, ...).

The command line prints them as one ``error: ...`` line plus an optional ``hint: ...`` line and exits with
status 2, without a traceback (``--debug`` shows one); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input or settings. ``hint`` says what to do about it (one line, optional)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class InputError(UserError):
    """An input corpus (audio folder, manifest, text corpus) that is missing, empty or unreadable."""


class ProfileError(UserError):
    """A profile file that is missing, not YAML, or does not validate (unknown keys, wrong types)."""
