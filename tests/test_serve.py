"""``anyrestore serve``: the HTTP API against a live server, and the real page in headless Chromium.

The browser test drives Chromium through chromedriver's plain HTTP WebDriver API with urllib (no
selenium): it sets the file input, picks a model, clicks Restore, moves the slider, clicks Download and
compares the downloaded PNG with what the model makes of the photo. It skips when Chromium or
chromedriver is missing, and fails instead when ``ANYRESTORE_BROWSER_TESTS=1`` (CI installs them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from anyrestore.cli import serve_cmd
from anyrestore.errors import AnyRestoreError
from anyrestore.inference import Restorer
from anyrestore.io import read_image
from anyrestore.models.checkpoint import LoadedModel, load_model, save_model
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.serve import ModelPool, ServeError, create_server, parse_multipart

TINY_NAFNET = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}
MAX_UPLOAD = 256 << 10
MAX_PIXELS = 20_000  # the 96x96 photo fits, a 160x160 image does not
ESTIMATE = {"noise": 0.7, "blur": 0.2, "rain": 0.1}


# ------------------------------------------------------------------------------------------ fixtures


def _tiny_nafnet(seed: int) -> tuple[ModelDescriptor, torch.nn.Module]:
    descriptor = ModelDescriptor.for_architecture("nafnet", TINY_NAFNET)
    torch.manual_seed(seed)
    model = descriptor.build().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return descriptor, model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    descriptor, model = _tiny_nafnet(0)
    return save_model(tmp_path_factory.mktemp("serve") / "tiny.safetensors", descriptor, model)


@pytest.fixture(scope="module")
def server(checkpoint: Path) -> Iterator[Any]:
    """A live server on a free port: the tiny checkpoint, and a model with a degradation estimator."""
    pool = ModelPool([str(checkpoint)], device="cpu", include_embedded=False)
    descriptor, model = _tiny_nafnet(1)
    model.analyze = lambda image: {k: torch.tensor(v) for k, v in ESTIMATE.items()}  # the optional hook
    pool.add_loaded("estimator", LoadedModel(model, descriptor), description="tiny model with an estimator")
    srv = create_server(pool, "127.0.0.1", 0, max_upload_bytes=MAX_UPLOAD, max_pixels=MAX_PIXELS, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def photo_png(photo_uint8: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo_uint8).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_restoration(checkpoint: Path, image_path: Path) -> np.ndarray:
    """What the model makes of the image, quantised to uint8 as the server's PNG stores it."""
    restored = Restorer(load_model(checkpoint), device="cpu")(read_image(image_path).pixels[None])[0]
    return torch.round(restored.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------------ HTTP helpers


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in fields.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        chunks.append(head.encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def request(
    server: Any,
    path: str,
    *,
    fields: dict[str, str] | None = None,
    files: dict[str, tuple[str, bytes]] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET, or of a POST when a form or a body is given."""
    headers = dict(headers or {})
    if fields is not None or files is not None:
        body, headers["Content-Type"] = multipart(fields or {}, files or {})
    req = urllib.request.Request(server.url + path.lstrip("/"), data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def json_error(status: int, body: bytes) -> str:
    """The one-line message of a JSON error answer."""
    data = json.loads(body)
    assert data["status"] == status and isinstance(data["error"], str)
    assert "\n" not in data["error"] and data["error"]
    return data["error"]


# ------------------------------------------------------------------------------------------ HTTP API


def test_models_list_and_page(server: Any, checkpoint: Path) -> None:
    status, _, body = request(server, "/api/models")
    assert status == 200
    data = json.loads(body)
    models = {m["id"]: m for m in data["models"]}
    assert set(models) == {"tiny.safetensors", "estimator"}
    assert models["tiny.safetensors"]["default"] and models["tiny.safetensors"]["architecture"] == "nafnet"
    assert models["estimator"]["analyze"] is True and models["tiny.safetensors"]["analyze"] is False
    assert data["limits"] == {"upload_bytes": MAX_UPLOAD, "pixels": MAX_PIXELS}

    status, headers, page = request(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        status, _, content = request(server, asset)
        assert status == 200 and content
        page += content
    # Self-contained: no CDN, no absolute URL anywhere in the page's files.
    assert b"http://" not in page and b"https://" not in page and b"//cdn" not in page
    assert request(server, "/nope")[0] == 404


def test_restore_returns_the_models_png(
    server: Any, checkpoint: Path, photo_png: bytes, tmp_path: Path
) -> None:
    status, headers, body = request(
        server,
        "/api/restore",
        fields={"model": "tiny.safetensors"},
        files={"image": ("photo.png", photo_png)},
    )
    assert status == 200 and headers["Content-Type"] == "image/png", body[:200]
    assert headers["X-Anyrestore-Model"] == "tiny.safetensors" and headers["X-Anyrestore-Analyze"] == "0"
    (tmp_path / "in.png").write_bytes(photo_png)
    got = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    expected = expected_restoration(checkpoint, tmp_path / "in.png")
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert np.abs(got.astype(int) - np.asarray(Image.open(io.BytesIO(photo_png)))).mean() > 1


def test_analysis_hook(server: Any, photo_png: bytes) -> None:
    form = {"fields": {"model": "estimator"}, "files": {"image": ("photo.png", photo_png)}}
    status, headers, _ = request(server, "/api/restore", **form)
    assert status == 200 and headers["X-Anyrestore-Analyze"] == "1"
    status, _, body = request(server, "/api/analyze", **form)
    assert status == 200
    weights = json.loads(body)["weights"]
    assert list(weights) == ["noise", "blur", "rain"]  # largest first
    assert weights == pytest.approx(ESTIMATE)
    status, _, body = request(
        server, "/api/analyze", fields={"model": "tiny.safetensors"}, files={"image": ("p.png", photo_png)}
    )
    assert status == 409 and "no degradation estimator" in json_error(409, body)


def test_bad_uploads_get_one_line_json_errors(server: Any, photo_png: bytes) -> None:
    def post(**kwargs: Any) -> tuple[int, str]:
        status, _, body = request(server, "/api/restore", **kwargs)
        return status, json_error(status, body)

    status, message = post(files={"image": ("notes.png", b"this is not an image at all")})
    assert status == 415 and message.startswith("notes.png: not an image")
    status, message = post(files={"image": ("big.bin", os.urandom(MAX_UPLOAD + (128 << 10)))})
    assert status == 413 and "too large" in message
    big = io.BytesIO()
    Image.new("RGB", (160, 160), (90, 120, 150)).save(big, format="PNG")
    status, message = post(files={"image": ("huge.png", big.getvalue())})
    assert status == 413 and message.startswith("huge.png: image too large")
    status, message = post(fields={"model": "tiny.safetensors"})
    assert status == 400 and "no 'image' file" in message
    status, message = post(fields={"model": "nope"}, files={"image": ("p.png", photo_png)})
    assert status == 404 and "unknown model 'nope'" in message
    status, message = post(body=b"raw bytes", headers={"Content-Type": "image/png"})
    assert status == 400 and "multipart" in message
    # Another site's page reaching the server through DNS rebinding or a cross-origin form is refused.
    status, _, body = request(server, "/api/models", headers={"Host": "evil.example"})
    assert status == 403 and json_error(403, body)
    status, message = post(files={"image": ("p.png", photo_png)}, headers={"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in message
    # The server still answers normally afterwards.
    assert request(server, "/api/models")[0] == 200


def test_concurrent_restores_are_safe(server: Any, photo_png: bytes) -> None:
    results: list[tuple[int, bytes]] = []

    def work() -> None:
        status, _, body = request(server, "/api/restore", files={"image": ("p.png", photo_png)})
        results.append((status, body))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [s for s, _ in results] == [200] * 4
    assert len({body for _, body in results}) == 1


def test_null_origin_is_refused(server: Any, photo_png: bytes) -> None:
    """A sandboxed frame or a file: page sends ``Origin: null``; that is not this server's page."""
    status, _, body = request(
        server, "/api/restore", files={"image": ("p.png", photo_png)}, headers={"Origin": "null"}
    )
    assert status == 403 and "cross-origin" in json_error(403, body)
    same = f"http://127.0.0.1:{server.port}"
    status, _, _ = request(
        server, "/api/restore", files={"image": ("p.png", photo_png)}, headers={"Origin": same}
    )
    assert status == 200


def _raw(server: Any, data: bytes, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.sendall(data)
    return sock


def test_oversized_upload_is_answered_before_its_body(server: Any) -> None:
    """The 413 comes at once, from the headers alone: the server does not first wait for the body."""
    head = (
        f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {10**10}\r\n\r\n"
    )
    with _raw(server, head.encode() + b"--x\r\n") as sock:
        start = time.monotonic()
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
        assert time.monotonic() - start < 3
    assert request(server, "/api/models")[0] == 200


def test_stalled_clients_time_out(server: Any) -> None:
    """A client that stops sending (headers or body) loses its connection instead of holding a thread."""
    server.request_timeout = 0.5
    try:
        stalls = [
            f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n",  # headers never end
            # the body stops short of its Content-Length
            f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000\r\n\r\n--x\r\n",
        ]
        for stall in stalls:
            with _raw(server, stall.encode(), timeout=5) as sock:
                start = time.monotonic()
                while sock.recv(4096):  # until the server closes (a timeout here fails the test)
                    pass
                assert time.monotonic() - start < 4
    finally:
        server.request_timeout = 60.0
    assert request(server, "/api/models")[0] == 200


def test_one_upload_restores_and_analyzes(server: Any, photo_png: bytes) -> None:
    form = {"model": "estimator", "analyze": "1"}
    status, headers, _ = request(server, "/api/restore", fields=form, files={"image": ("p.png", photo_png)})
    assert status == 200 and headers["X-Anyrestore-Analyze"] == "1"
    assert json.loads(headers["X-Anyrestore-Weights"]) == pytest.approx(ESTIMATE)
    # Without the request, or for a model without an estimator, no weights are computed or sent.
    status, headers, _ = request(
        server, "/api/restore", fields={"model": "estimator"}, files={"image": ("p.png", photo_png)}
    )
    assert status == 200 and "X-Anyrestore-Weights" not in headers
    form = {"model": "tiny.safetensors", "analyze": "1"}
    status, headers, _ = request(server, "/api/restore", fields=form, files={"image": ("p.png", photo_png)})
    assert status == 200 and "X-Anyrestore-Weights" not in headers
    # The page asks for both in its one restore request and never uploads the image a second time.
    status, _, script = request(server, "/static/app.js")
    assert b'form.append("analyze", "1")' in script and b"api/analyze" not in script


def test_multipart_parser_keeps_binary_bytes() -> None:
    data = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n\r\n"
    body, content_type = multipart({"model": "m"}, {"image": ("é.png", data)})
    fields = parse_multipart(body, content_type)
    assert fields["image"].data == data and fields["image"].filename == "é.png"
    assert fields["model"].data == b"m" and fields["model"].filename is None


def test_cli_arguments_and_startup_errors(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    serve_cmd.add_arguments(parser)
    args = parser.parse_args(["--model", "a.pth", "b.pth", "--model", "c", "--port", "0"])
    assert args.model == ["a.pth", "b.pth", "c"] and args.host == "127.0.0.1"
    with pytest.raises(AnyRestoreError, match="missing.safetensors: no such file") as info:
        serve_cmd.run(parser.parse_args(["--model", str(tmp_path / "missing.safetensors"), "--port", "0"]))
    assert "\n" not in str(info.value)
    with pytest.raises(ServeError, match="no models to serve"):
        create_server(ModelPool([], include_embedded=False), "127.0.0.1", 0)


# ------------------------------------------------------------------------------------------ browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key


def _browser_tools() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, found in (("chromium", chromium), ("chromedriver", driver)) if not found]
    if missing:
        reason = f"{' and '.join(missing)} not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("ANYRESTORE_BROWSER_TESTS") == "1":
            pytest.fail(f"ANYRESTORE_BROWSER_TESTS=1 but {reason}")
        pytest.skip(reason)
    assert chromium and driver
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebDriver:
    """The few W3C WebDriver commands the test needs, over chromedriver's HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = ""

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        url = f"{self.url}/session/{self.session}{path}" if self.session else f"{self.url}{path}"
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            value = json.load(exc).get("value", {})
            raise AssertionError(f"WebDriver {method} {path}: {value.get('message', value)}") from None

    def find(self, css: str) -> str:
        found = self.call("POST", "/element", {"using": "css selector", "value": css})
        assert ELEMENT in found, found
        return found[ELEMENT]

    def click(self, css: str) -> None:
        self.call("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css: str, text: str) -> None:
        self.call("POST", f"/element/{self.find(css)}/value", {"text": text})

    def script(self, source: str) -> Any:
        return self.call("POST", "/execute/sync", {"script": source, "args": []})

    def wait(self, what: str, condition: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        status = self.script("return document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {what} (page status: {status!r})")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[WebDriver, Path]]:
    chromium, driver_path = _browser_tools()
    port = _free_port()
    log = open(tmp_path / "chromedriver.log", "wb")  # noqa: SIM115 - closed in the teardown below
    process = subprocess.Popen([driver_path, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT)
    driver = WebDriver(f"http://127.0.0.1:{port}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    try:
        driver.wait("chromedriver", lambda: _ready(driver), timeout=30)
        options = {
            "binary": chromium,
            "args": [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"],
            "prefs": {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
                "download.directory_upgrade": True,
            },
        }
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        driver.session = driver.call("POST", "/session", caps)["sessionId"]
        yield driver, downloads
    finally:
        if driver.session:
            with contextlib.suppress(AssertionError, OSError):
                driver.call("DELETE", "")
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _ready(driver: WebDriver) -> bool:
    try:
        return bool(driver.call("GET", "/status").get("ready"))
    except (OSError, AssertionError):
        return False


@pytest.mark.browser
def test_page_in_headless_chromium(
    browser: tuple[WebDriver, Path], server: Any, checkpoint: Path, photo_png: bytes, tmp_path: Path
) -> None:
    driver, downloads = browser
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(photo_png)
    driver.call("POST", "/url", {"url": server.url})
    driver.wait("the model list", lambda: driver.script("return document.getElementById('model').length"))

    # Upload, restore with the plain model: result shown, no analysis panel.
    driver.type("#file", str(photo))
    driver.click('#model option[value="tiny.safetensors"]')
    driver.click("#restore")
    after_loaded = (
        "const a = document.getElementById('after'); return !a.hidden && a.complete && a.naturalWidth"
    )
    assert driver.wait("the restored image", lambda: driver.script(after_loaded)) == 96
    assert driver.script("return document.getElementById('status').textContent").startswith("Restored with")
    assert driver.script("return document.getElementById('analysis').hidden") is True

    # The slider moves the split between before and after.
    split = "return document.getElementById('compare').style.getPropertyValue('--split')"
    assert driver.script(split) == "50%"
    driver.type("#slider", "\ue012" * 10)  # ArrowLeft x10
    assert driver.script(split) == "40%"

    # Download: the file is the model's restoration of the photo.
    driver.click("#download")
    target = downloads / "astronaut_restored.png"
    driver.wait("the download", lambda: target.exists() and not list(downloads.glob("*.crdownload")))
    got = np.asarray(Image.open(target).convert("RGB")).astype(int)
    assert np.abs(got - expected_restoration(checkpoint, photo)).max() <= 1
    assert np.abs(got - np.asarray(Image.open(photo))).mean() > 1

    # A model with a degradation estimator shows its analysis.
    driver.click('#model option[value="estimator"]')
    driver.click("#restore")
    driver.wait(
        "the analysis", lambda: not driver.script("return document.getElementById('analysis').hidden")
    )
    text = driver.script("return document.getElementById('weights').innerText")
    assert text.split() == ["noise", "0.70", "blur", "0.20", "rain", "0.10"]

    # A bad upload shows the server's one-line error.
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    driver.type("#file", str(bad))
    driver.click("#restore")
    status = "const s = document.getElementById('status'); return s.className === 'error' && s.textContent"
    assert driver.wait("the error", lambda: driver.script(status)).startswith("notes.png: not an image")
