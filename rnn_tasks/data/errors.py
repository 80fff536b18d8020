"""Errors that tell the user what was wrong with their data and what was expected."""

from __future__ import annotations

from os import PathLike


class DataFormatError(ValueError):
    """A local data file does not follow its format.

    ``str(err)`` is ``"{path}:{line}: {message}"``, the form editors and terminals link to.

    Args:
        path: The file.
        line: 1-based line number of the offending line.
        message: What was wrong and what was expected.
    """

    def __init__(self, path: str | PathLike, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}")

    def __reduce__(self):
        # Exceptions pickle through ``self.args`` (the formatted string) by default, which
        # this constructor cannot take; DataLoader workers pickle exceptions.
        return (type(self), (self.path, self.line, self.message))


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be loaded from where it was asked for (e.g. the Hub is unreachable)."""
