"""A small exact ``multipart/form-data`` parser for the uploads.

The standard library's ``cgi`` module is gone from Python 3.13; browsers send a random boundary that
never occurs in the parts, so splitting the body on it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from anyrestore.serve.errors import RequestError


@dataclass(frozen=True)
class Part:
    """One form field: its name, the file name for uploads, its content type and its bytes."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


def _header_params(name: str, value: str) -> Message:
    message = Message()
    message[name] = value
    return message


def parse_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """The fields of a ``multipart/form-data`` body, by name (the first of repeated names wins)."""
    header = _header_params("content-type", content_type)
    if header.get_content_type() != "multipart/form-data":
        raise RequestError(400, "expected a multipart/form-data upload (a form with an image file)")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise RequestError(400, "multipart upload without a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 2 or not sections[-1].startswith(b"--"):
        raise RequestError(400, "malformed or truncated multipart upload")
    parts: dict[str, Part] = {}
    for section in sections[1:-1]:
        head, sep, data = section.partition(b"\r\n\r\n")
        if not sep:
            raise RequestError(400, "malformed multipart upload (a part has no header)")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip().lower()] = value.strip()
        disposition = _header_params("content-disposition", headers.get("content-disposition", ""))
        name = disposition.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = disposition.get_filename()
        part_type = headers.get("content-type", "text/plain")
        parts.setdefault(name, Part(name, filename, part_type, data))
    return parts
