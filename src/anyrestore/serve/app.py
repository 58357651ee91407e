"""The local web app: a self-contained page and a small JSON/PNG API on the standard library's server.

Routes: ``GET /`` (the page), ``GET /static/app.js|app.css``, ``GET /api/models``, ``POST /api/restore``
(multipart ``image`` + ``model`` -> PNG; with ``analyze=1`` a model with an estimator also sends its
degradation weights as JSON in ``X-Anyrestore-Weights``, so one upload serves both) and
``POST /api/analyze`` (same form -> JSON weights). Errors are JSON ``{"error": one line, "status": code}``.
The server binds to 127.0.0.1 unless told otherwise and answers only requests addressed to the host it
serves (so a web page cannot reach it through DNS rebinding), and only same-origin uploads (``Origin:
null`` included among the refused). Every socket read and write times out (a stalled client frees its
thread), and a refused upload is answered before its body is read.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from anyrestore import __version__
from anyrestore.errors import AnyRestoreError, ImageError
from anyrestore.io import ImageData, read_image, write_image
from anyrestore.serve.errors import RequestError, ServeError
from anyrestore.serve.forms import Part, parse_multipart
from anyrestore.serve.pool import ModelPool

DEFAULT_MAX_UPLOAD = 64_000_000
DEFAULT_MAX_PIXELS = 50_000_000
FORM_OVERHEAD = 64 << 10  # multipart headers and the model field, beyond the image itself
DRAIN_LIMIT = 256 << 20  # after refusing an upload, read and drop at most this much of its body...
DRAIN_SECONDS = 5.0  # ...for at most this long, so a client still sending can read the answer
REQUEST_TIMEOUT = 60.0  # seconds any one socket read or write may wait
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
WILDCARD = {"", "0.0.0.0", "::"}
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def load_static() -> dict[str, bytes]:
    """The page's files from the package, read once; missing files are a clear installation error."""
    folder = resources.files("anyrestore.serve") / "static"
    files = {}
    for name, _ in STATIC.values():
        try:
            files[name] = (folder / name).read_bytes()
        except OSError:
            raise ServeError(f"the web page's file static/{name} is missing from this installation") from None
    return files


class RestoreServer(ThreadingHTTPServer):
    """A threading HTTP server holding the model pool, the upload limits and the page's files."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        pool: ModelPool,
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        quiet: bool = False,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.pool = pool
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.request_timeout = request_timeout
        self.quiet = quiet
        self.static = load_static()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in WILDCARD else self.host
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a request's Host names this server (any host when bound to all interfaces)."""
        if self.host in WILDCARD:
            return True
        if not host_header:
            return False
        hostname = urlsplit(f"//{host_header}").hostname or ""
        return hostname in LOOPBACK or hostname == self.host.strip("[]")


def create_server(
    pool: ModelPool,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    quiet: bool = False,
    request_timeout: float = REQUEST_TIMEOUT,
) -> RestoreServer:
    """Bind a :class:`RestoreServer` (``port=0`` picks a free port); call ``serve_forever()`` to run it."""
    if not pool.entries:
        raise ServeError("no models to serve: this installation embeds none; pass --model FILE")
    try:
        return RestoreServer(
            (host, port),
            pool,
            max_upload_bytes=max_upload_bytes,
            max_pixels=max_pixels,
            quiet=quiet,
            request_timeout=request_timeout,
        )
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


class Handler(BaseHTTPRequestHandler):
    """One request: route, answer, and turn every failure into a one-line JSON error."""

    server: RestoreServer
    server_version = f"anyrestore/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # ------------------------------------------------------------------ plumbing

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # applied to the socket by the base class
        self.body_pending = False  # a POST body not read yet (drained after the answer)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": " ".join(message.split()), "status": status})

    def _handle(self, route: Callable[[], None]) -> None:
        try:
            if not self.server.host_allowed(self.headers.get("Host")):
                raise RequestError(403, "requests must address this server by its own host name")
            route()
        except ServeError as exc:
            if self.command == "POST":
                self.close_connection = True  # the body may be unread; never parse it as a request
            self._error(exc.status, str(exc))
            self._drain_pending_body()
        except AnyRestoreError as exc:
            self._error(500, str(exc))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client left or stalled: nobody to answer
        except Exception as exc:  # noqa: BLE001 - reported as a one-line 500, traceback to the log
            traceback.print_exc(file=sys.stderr)
            self._error(500, f"internal error: {type(exc).__name__}: {exc}")

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._handle(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self.body_pending = True
        self._handle(self._post)

    # ------------------------------------------------------------------ routes

    def _get(self) -> None:
        path = urlsplit(self.path).path
        if path in STATIC:
            name, content_type = STATIC[path]
            headers = {"Content-Security-Policy": CSP} if name == "index.html" else {}
            self._send(200, self.server.static[name], content_type, headers)
        elif path == "/api/models":
            self._json(
                200,
                {
                    "models": self.server.pool.describe(),
                    "limits": {
                        "upload_bytes": self.server.max_upload_bytes,
                        "pixels": self.server.max_pixels,
                    },
                },
            )
        else:
            raise RequestError(404, f"no such page: {path}")

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path not in ("/api/restore", "/api/analyze"):
            raise RequestError(404, f"no such endpoint: {path}")
        origin = self.headers.get("Origin")
        # "null" (a sandboxed frame, a file: page, a redirect) is another origin too
        if origin is not None and urlsplit(origin).netloc != self.headers.get("Host"):
            raise RequestError(403, "cross-origin uploads are refused")
        model_id, part, fields = self._upload()
        with tempfile.TemporaryDirectory(prefix="anyrestore-serve-") as tmp:
            image = self._decode(part, Path(tmp))
            if path == "/api/analyze":
                weights = self.server.pool.analyze(model_id, image.pixels[None])
                self._json(200, {"model": model_id, "weights": weights})
                return
            start = time.perf_counter()
            pixels = self.server.pool.restore(model_id, image.pixels[None], image.jpeg_tables)
            restored = image.with_pixels(pixels)
            seconds = time.perf_counter() - start
            png = self._encode(restored, Path(tmp) / "restored.png")
        analyze = self.server.pool.has_analyzer(model_id)
        headers = {
            "X-Anyrestore-Model": model_id,
            "X-Anyrestore-Seconds": f"{seconds:.3f}",
            "X-Anyrestore-Analyze": "1" if analyze else "0",
        }
        if analyze and _field(fields, "analyze") == "1":
            weights = self.server.pool.analyze(model_id, image.pixels[None])
            headers["X-Anyrestore-Weights"] = json.dumps(weights, ensure_ascii=True)
        self._send(200, png, "image/png", headers)

    # ------------------------------------------------------------------ uploads

    def _content_length(self) -> int:
        value = self.headers.get("Content-Length")
        if value is None:
            raise RequestError(411, "uploads need a Content-Length header")
        try:
            length = int(value)
        except ValueError:
            raise RequestError(400, f"invalid Content-Length {value!r}") from None
        if length < 0:
            raise RequestError(400, f"invalid Content-Length {value!r}")
        return length

    def _drain_pending_body(self) -> None:
        """After answering a refused upload: drop what the client still sends of its body, within
        ``DRAIN_LIMIT`` bytes and ``DRAIN_SECONDS``, so that a client that writes the whole body before
        reading gets to read the answer; then the connection closes."""
        if not self.body_pending:
            return
        self.body_pending = False
        self.close_connection = True
        try:
            remaining = min(self._content_length(), DRAIN_LIMIT)
            self.wfile.flush()
            deadline = time.monotonic() + DRAIN_SECONDS
            while remaining > 0 and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(min(left, self.server.request_timeout))
                chunk = self.rfile.read1(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
        except (RequestError, OSError):
            pass

    def _upload(self) -> tuple[str, Part, dict[str, Part]]:
        """The model id, the image part and all fields of a multipart upload, within the size limit."""
        length = self._content_length()
        limit = self.server.max_upload_bytes
        if length > limit + FORM_OVERHEAD:
            raise RequestError(413, f"upload too large: {length / 1e6:.1f} MB (limit {limit / 1e6:.1f} MB)")
        self.body_pending = False
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, "upload ended early")
        fields = parse_multipart(body, self.headers.get("Content-Type", ""))
        image = fields.get("image")
        if image is None or image.filename is None:
            raise RequestError(400, "the upload has no 'image' file")
        if not image.data:
            raise RequestError(400, f"{image.filename or 'image'}: empty file")
        if len(image.data) > limit:
            size = len(image.data) / 1e6
            raise RequestError(413, f"upload too large: {size:.1f} MB (limit {limit / 1e6:.1f} MB)")
        model_id = _field(fields, "model")
        return model_id or (self.server.pool.default_id or ""), image, fields

    def _decode(self, part: Part, folder: Path) -> ImageData:
        """Read the uploaded bytes as an image; errors name the uploaded file, not our temporary one."""
        path = folder / "upload"
        path.write_bytes(part.data)
        name = Path(part.filename or "image").name
        try:
            return read_image(path, max_pixels=self.server.max_pixels)
        except ImageError as exc:
            status = 413 if "too large" in exc.problem else 415
            raise RequestError(status, f"{name}: {exc.problem}") from None

    @staticmethod
    def _encode(image: ImageData, path: Path) -> bytes:
        """The restored image as PNG bytes, keeping bit depth, alpha, grayscale and colour profile."""
        write_image(path, image)
        return path.read_bytes()


def _field(fields: dict[str, Part], name: str) -> str:
    """A text field of a form, stripped; empty when absent."""
    part = fields.get(name)
    return part.data.decode("utf-8", "replace").strip() if part else ""


def serve_until_interrupted(server: RestoreServer) -> None:
    """Run ``server`` until Ctrl-C, then release the port."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
