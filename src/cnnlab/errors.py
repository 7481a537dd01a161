"""The one base class of the errors a user causes and fixes (a config value, a missing dataset or
checkpoint, a resume that would change the run): ``train.py`` reports them in one line, without a
traceback, and removes the run directory they left empty."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A problem with what was asked for, not with cnnlab; the message says what and how to fix it."""
