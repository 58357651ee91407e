"""A small local web app: upload a photo, pick a model, restore, compare before/after, download.

Standard library HTTP server (no extra dependency); the page is self-contained (no CDN, nothing
external). See :mod:`anyrestore.serve.app` for the routes and :mod:`anyrestore.serve.pool` for model
caching and the optional degradation-analysis hook.
"""

from anyrestore.serve.app import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD,
    RestoreServer,
    create_server,
    serve_until_interrupted,
)
from anyrestore.serve.errors import RequestError, ServeError
from anyrestore.serve.forms import Part, parse_multipart
from anyrestore.serve.pool import ModelEntry, ModelPool, find_analyzer

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD",
    "ModelEntry",
    "ModelPool",
    "Part",
    "RequestError",
    "RestoreServer",
    "ServeError",
    "create_server",
    "find_analyzer",
    "parse_multipart",
    "serve_until_interrupted",
]
