"""The one error type of the ABAIR package."""

from __future__ import annotations

from anyrestore.errors import AnyRestoreError


class ABAIRError(AnyRestoreError):
    """An ABAIR option, bundle, phase or image cannot be used; the message says why, in one line."""
