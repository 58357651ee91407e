"""Error types shared by every layer: one clear, one-line message each."""

from __future__ import annotations

from pathlib import Path


class AnyRestoreError(Exception):
    """Base class of the errors anyrestore raises on bad input; the CLI prints them as one line."""


class ImageError(AnyRestoreError):
    """An image file could not be read or written; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
