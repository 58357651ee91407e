"""The server's errors: each carries the HTTP status it is answered with, and a one-line message."""

from __future__ import annotations

from anyrestore.errors import AnyRestoreError


class ServeError(AnyRestoreError):
    """The server cannot start (no models, port in use) or cannot answer a request."""

    def __init__(self, message: str, status: int = 500) -> None:
        self.status = status
        super().__init__(message)


class RequestError(ServeError):
    """A request the server refuses because of what was sent (bad upload, unknown route...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status)
