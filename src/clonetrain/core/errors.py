"""Errors a user can act on. Each carries what went wrong and how to fix it; none needs a traceback."""

from __future__ import annotations


class ClonetrainError(Exception):
    """Base of every error that is reported to the user as a message, not a traceback."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class CloneNameError(ClonetrainError):
    """A clone id that is empty or could escape the data root."""


class ConsentError(ClonetrainError):
    """The clone's consent record is missing, malformed or expired."""


class FootageError(ClonetrainError):
    """A take (or a whole clone's footage) that cannot be used; `file` names the take."""

    def __init__(self, file: str, message: str, fix: str | None = None, code: str = "unusable"):
        super().__init__(f"{file}: {message}", fix)
        self.file = file
        self.code = code
        self.reason = message


class NotEnoughFootageError(ClonetrainError):
    """The usable footage of a clone is below the configured minimum."""


class UpstreamMissingError(ClonetrainError):
    """A stage was asked to run before the stage it reads from."""


class WeightsMissingError(ClonetrainError):
    """A pretrained weight file is not on disk (nothing is ever downloaded)."""


class LockedError(ClonetrainError):
    """Another run holds the clone's lock."""
