"""Bad and awkward uploads over HTTP: documented status and message or a correct result,
never a 5xx, and the service still ready afterwards. Also the upload and pixel limits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def shared_client(tiny_model: Any, service: Any) -> Iterator[Any]:
    """One app for the whole corpus (module scope keeps the run short)."""
    from fastapi.testclient import TestClient

    from app.inference.detector import Detector
    from app.service.factory import create_app

    detector = Detector(tiny_model, "cpu")
    app = create_app(service.settings(), detector_loader=lambda _: detector)
    with TestClient(app) as client:
        service.wait_ready(client)
        yield client


@pytest.mark.parametrize("path", ["/detect", "/classify"])
@pytest.mark.parametrize("encoding", ["multipart", "raw"])
def test_corpus_over_http(shared_client: Any, image_case: Any, path: str, encoding: str) -> None:
    if encoding == "multipart":
        response = shared_client.post(
            path, files={"image": ("upload", image_case.data, "application/octet-stream")}
        )
    else:
        response = shared_client.post(
            path, content=image_case.data, headers={"Content-Type": "application/octet-stream"}
        )
    assert response.status_code < 500, response.text
    assert response.status_code == image_case.status, response.text
    if image_case.status == 200:
        body = response.json()
        assert (body["width"], body["height"]) == image_case.size
    else:
        assert response.json() == {"detail": image_case.message}
    assert shared_client.get("/readyz").status_code == 200


def test_upload_over_the_limit_is_413_from_content_length(make_app: Any, images: Any) -> None:
    big = images.encode(images.scene(400, 300, seed=1), "BMP")  # ~360 KB
    with make_app.client(max_upload_mb=0.1) as client:
        raw = client.post("/detect", content=big, headers={"Content-Type": "image/bmp"})
        assert raw.status_code == 413
        assert raw.json() == {"detail": f"upload too large: the limit is {int(0.1 * 2**20)} bytes"}
        multipart = client.post("/detect", files={"image": ("a.bmp", big, "image/bmp")})
        assert multipart.status_code == 413
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("content_type", ["image/png", "multipart/form-data; boundary=b"])
def test_upload_over_the_limit_is_413_while_streaming(content_type: str) -> None:
    """No Content-Length (chunked): reading stops at the limit instead of taking the body whole.

    (``TestClient`` buffers request bodies, so this drives ``read_upload`` with an ASGI
    ``receive`` that counts the chunks it hands out.)
    """
    from fastapi import HTTPException, Request

    from app.service.uploads import read_upload

    chunk = 64 * 1024
    handed_out = 0
    prefix = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\n'

    async def receive() -> dict[str, Any]:
        nonlocal handed_out
        handed_out += 1
        body = prefix + b"\0" * chunk if handed_out == 1 else b"\0" * chunk
        return {"type": "http.request", "body": body, "more_body": handed_out < 1000}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/detect",
        "headers": [(b"content-type", content_type.encode())],
    }
    with pytest.raises(HTTPException) as caught:
        asyncio.run(read_upload(Request(scope, receive), max_bytes=512 * 1024))
    assert caught.value.status_code == 413
    assert caught.value.detail == "upload too large: the limit is 524288 bytes"
    assert handed_out <= 10, "reading must stop soon after the limit (1000 chunks offered)"


def test_pixel_limit_is_413(make_app: Any, images: Any) -> None:
    with make_app.client(max_pixels=1000) as client:
        response = client.post(
            "/detect", files={"image": ("a.png", images.encode(images.scene(), "PNG"), "image/png")}
        )
        assert response.status_code == 413
        assert response.json() == {
            "detail": "image too large: 64x48 pixels exceeds the limit of 1000"
        }


def test_exif_rotated_boxes_are_in_the_displayed_frame(make_app: Any, images: Any) -> None:
    """A stand-in detector that 'detects' the bright square: its box must come back in the
    displayed (EXIF-rotated) frame, with the displayed width and height."""
    from app.inference.detector import Detection, DetectionResult

    class BrightSquareDetector:
        def __init__(self, inner: Any) -> None:
            self.model, self.device = inner.model, inner.device

        def detect(self, images_: Any, proposals: Any, options: Any) -> list[DetectionResult]:
            results = []
            for image in images_:
                x1, y1, x2, y2 = images.bright_box(np.asarray(image))
                detection = Detection("square", 1, 1.0, 0.9, (x1, y1, x2, y2))
                results.append(
                    DetectionResult(
                        [detection], len(proposals[0]), [96], image.shape[1], image.shape[0], {}
                    )
                )
            return results

        def warm_up(self) -> None:
            pass

    with make_app.client(detector=BrightSquareDetector(make_app.detector)) as client:
        response = client.post(
            "/detect", files={"image": ("r.jpg", images.exif_rotated_jpeg(), "image/jpeg")}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (48, 64)
    box = body["detections"][0]["box"]
    found = (box["x1"], box["y1"], box["x2"], box["y2"])
    assert all(abs(a - b) <= 2 for a, b in zip(found, images.exif_square_displayed, strict=True))
