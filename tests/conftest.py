"""Shared fixtures: a corpus of bad and awkward images, a tiny random model, and app factories.

The image corpus is generated here (nothing downloaded). Any test that takes an
``image_case`` argument is parametrised over every :data:`IMAGE_CASES` entry; each case has
the bytes and the documented answer (status and exact message, or a check of the pixels).
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image

#: Displayed-frame box of the bright square in the EXIF-rotated JPEG (x1, y1, x2, y2).
EXIF_SQUARE_DISPLAYED = (31, 4, 43, 20)


@dataclass(frozen=True)
class ImageCase:
    """One corpus entry: bytes, and either the expected error or a pixel check."""

    name: str
    data: bytes
    status: int = 200
    message: str | None = None
    size: tuple[int, int] | None = None  # (width, height) when it decodes
    check: Callable[[np.ndarray], None] | None = field(default=None, compare=False)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    """``image`` saved to bytes in ``fmt``."""
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def scene(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A small RGB test picture: noise plus a bright square."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 100, (height, width, 3), dtype=np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = 250
    return Image.fromarray(pixels)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit PNG of ``width x height`` zeros: about 110 KB declaring 900 Mpixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    parts = [compressor.compress(row * rows_per_block) for _ in range(height // rows_per_block)]
    parts.append(compressor.compress(row * (height % rows_per_block)))
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def exif_rotated_jpeg() -> bytes:
    """A 64x48 stored JPEG with a white square at x 4..20, y 4..16 and EXIF orientation 6
    (display = stored rotated 90 degrees clockwise, so 48x64 with the square at
    :data:`EXIF_SQUARE_DISPLAYED`)."""
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[4:17, 4:21] = 255
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def bright_box(image: np.ndarray, threshold: int = 128) -> tuple[int, int, int, int]:
    """Inclusive box ``(x1, y1, x2, y2)`` of the pixels brighter than ``threshold``."""
    ys, xs = np.nonzero(image.mean(axis=2) > threshold)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _check_gray(image: np.ndarray) -> None:
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def _check_rgba(image: np.ndarray) -> None:
    assert tuple(image[0, 0]) == (255, 255, 255), "transparent pixels become white"
    assert tuple(image[-1, -1]) == (10, 200, 30)


def _check_sixteen_bit(image: np.ndarray) -> None:
    assert tuple(image[0, 0]) == (255, 255, 255)  # 65535
    assert tuple(image[0, 1]) == (100, 100, 100)  # 257 * 100
    assert tuple(image[0, 2]) == (0, 0, 0)


def _check_first_frame(image: np.ndarray) -> None:
    red, _, blue = image.reshape(-1, 3).mean(axis=0)
    assert red > 200 and blue < 50, "the first (red) frame, not the second (blue)"


def _check_exif(image: np.ndarray) -> None:
    found = bright_box(image)
    assert all(abs(a - b) <= 2 for a, b in zip(found, EXIF_SQUARE_DISPLAYED, strict=True)), found


def _check_cmyk(image: np.ndarray) -> None:
    assert image[..., 1].mean() < 60 and image[..., 0].mean() > 180  # magenta+yellow = red


def _build_cases() -> list[ImageCase]:
    jpeg = encode(scene(), "JPEG", quality=90)
    png = encode(scene(), "PNG")
    sixteen = np.zeros((24, 32), dtype=np.uint16)
    sixteen[0, 0], sixteen[0, 1] = 65535, 257 * 100
    rgba = np.zeros((24, 32, 4), dtype=np.uint8)
    rgba[-1, -1] = (10, 200, 30, 255)
    frames = [Image.new("RGB", (32, 24), (255, 0, 0)), Image.new("RGB", (32, 24), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    palette_transparent = Image.new("P", (32, 24), 0)
    palette_transparent.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette_transparent.putpixel((5, 5), 1)
    return [
        ImageCase("empty", b"", 400, "empty body: expected an image"),
        ImageCase(
            "not_an_image",
            b"this is plain text, not an image\n" * 8,
            415,
            "unsupported image format: expected JPEG, PNG, GIF, WebP, TIFF or BMP",
        ),
        ImageCase(
            "ico_not_allowed",
            encode(scene(32, 32), "ICO"),
            415,
            "unsupported image format: expected JPEG, PNG, GIF, WebP, TIFF or BMP",
        ),
        ImageCase("truncated_jpeg", jpeg[: len(jpeg) // 2], 400, "corrupt or truncated image data"),
        ImageCase("truncated_png", png[: len(png) // 2], 400, "corrupt or truncated image data"),
        ImageCase(
            "one_by_one",
            encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
            422,
            "image too small: 1x1 pixels, each side must be at least 16",
        ),
        ImageCase(
            "below_network_minimum",
            encode(scene(40, 12), "PNG"),
            422,
            "image too small: 40x12 pixels, each side must be at least 16",
        ),
        ImageCase(
            "extreme_aspect_ratio",
            encode(Image.new("RGB", (600, 16)), "PNG"),
            422,
            "image aspect ratio too extreme: 600x16 pixels, the longer side may be at most 32 "
            "times the shorter",
        ),
        ImageCase(
            "decompression_bomb",
            bomb_png(),
            413,
            # Pillow's own guard (above 2 x Image.MAX_IMAGE_PIXELS) fires inside Image.open,
            # before the size is known to us: same status, no WxH in the message.
            "image too large: exceeds the limit of 40000000 pixels",
        ),
        ImageCase("jpeg", jpeg, size=(64, 48)),
        ImageCase("png", png, size=(64, 48)),
        ImageCase(
            "grayscale", encode(scene().convert("L"), "PNG"), size=(64, 48), check=_check_gray
        ),
        ImageCase("rgba", encode(Image.fromarray(rgba), "PNG"), size=(32, 24), check=_check_rgba),
        ImageCase(
            "sixteen_bit_png",
            encode(Image.fromarray(sixteen), "PNG"),
            size=(32, 24),
            check=_check_sixteen_bit,
        ),
        ImageCase(
            "sixteen_bit_tiff",
            encode(Image.fromarray(sixteen), "TIFF"),
            size=(32, 24),
            check=_check_sixteen_bit,
        ),
        ImageCase(
            "cmyk_jpeg",
            encode(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG"),
            size=(32, 24),
            check=_check_cmyk,
        ),
        ImageCase("palette_png", encode(scene().convert("P"), "PNG"), size=(64, 48)),
        ImageCase(
            "palette_png_transparent",
            encode(palette_transparent, "PNG", transparency=0),
            size=(32, 24),
            check=lambda a: (
                (tuple(a[0, 0]) == (255, 255, 255) and tuple(a[5, 5]) == (200, 10, 10))
                or pytest.fail(f"got {a[0, 0]} {a[5, 5]}")
            ),
        ),
        ImageCase("animated_gif", gif.getvalue(), size=(32, 24), check=_check_first_frame),
        ImageCase("webp", encode(scene(), "WEBP", quality=90), size=(64, 48)),
        ImageCase("tiff", encode(scene(), "TIFF"), size=(64, 48)),
        ImageCase("bmp", encode(scene(), "BMP"), size=(64, 48)),
        ImageCase("exif_rotated_jpeg", exif_rotated_jpeg(), size=(48, 64), check=_check_exif),
    ]


_CASES: list[ImageCase] | None = None


def image_cases() -> list[ImageCase]:
    """The corpus (built once per session)."""
    global _CASES
    if _CASES is None:
        _CASES = _build_cases()
    return _CASES


IMAGE_CASE_NAMES = [
    "empty", "not_an_image", "ico_not_allowed", "truncated_jpeg", "truncated_png", "one_by_one",
    "below_network_minimum", "extreme_aspect_ratio", "decompression_bomb", "jpeg", "png",
    "grayscale", "rgba", "sixteen_bit_png", "sixteen_bit_tiff", "cmyk_jpeg", "palette_png",
    "palette_png_transparent", "animated_gif", "webp", "tiff", "bmp", "exif_rotated_jpeg",
]  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    """Starlette's TestClient warns that it prefers httpx2; httpx is what we pin."""
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise every ``image_case`` argument over the corpus, by name."""
    if "image_case" in metafunc.fixturenames:
        metafunc.parametrize("image_case", IMAGE_CASE_NAMES, indirect=True)


class ImageKit:
    """Image helpers for tests, handed out by the ``images`` fixture."""

    encode = staticmethod(encode)
    scene = staticmethod(scene)
    bomb_png = staticmethod(bomb_png)
    exif_rotated_jpeg = staticmethod(exif_rotated_jpeg)
    bright_box = staticmethod(bright_box)
    exif_square_displayed = EXIF_SQUARE_DISPLAYED


@pytest.fixture(scope="session")
def images() -> ImageKit:
    """Generators of test images (see :class:`ImageKit`)."""
    return ImageKit()


@pytest.fixture
def image_case(request: pytest.FixtureRequest) -> ImageCase:
    """The corpus entry named by the parametrisation."""
    by_name = {case.name: case for case in image_cases()}
    return by_name[request.param]


# --------------------------------------------------------------------------- service fixtures

TINY_CLASSES = ["circle", "square", "triangle"]


class ControlledDetector:
    """Wraps a detector (a real tiny one, usually) so tests can slow it, block it, make it
    fail, and see how it was called. Same public surface as ``app.inference.detector.Detector``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = inner.model
        self.device = inner.device
        self.delay_s = 0.0
        self.gate: threading.Event | None = None  # when set, calls wait for it
        self.failures: list[BaseException] = []  # raised by the next calls, in order
        self.fail_when: Callable[[list[np.ndarray]], BaseException | None] | None = None
        self.detect_batches: list[int] = []
        self.classify_batches: list[int] = []
        self.started = threading.Event()  # set when a detect/classify call begins

    def _enter(self, images: list[np.ndarray]) -> None:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.failures:
            raise self.failures.pop(0)
        if self.fail_when is not None:
            failure = self.fail_when(images)
            if failure is not None:
                raise failure

    def detect(self, images: Any, proposals: Any, options: Any = None) -> Any:
        images = list(images)
        self._enter(images)
        self.detect_batches.append(len(images))
        if options is None:
            return self.inner.detect(images, proposals)
        return self.inner.detect(images, proposals, options)

    def classify(
        self, images: Any, top_k: int = 5, views: str = "full", proposals: Any = None
    ) -> Any:
        images = list(images)
        self._enter(images)
        self.classify_batches.append(len(images))
        return self.inner.classify(images, top_k=top_k, views=views, proposals=proposals)

    def warm_up(self) -> None:
        self.inner.warm_up()


@pytest.fixture(scope="session")
def tiny_model() -> Any:
    """A tiny random-weight model at small scales, so CPU inference takes milliseconds."""
    from app.model.config import DetectionConfig, ProposalConfig
    from app.model.store import build_random_model

    detection = DetectionConfig(single_scale=96, multi_scales=(64, 96, 128), min_score=-1e9)
    proposals = ProposalConfig(max_side=200, max_proposals=200)
    return build_random_model(
        TINY_CLASSES, width=0.125, fc_dim=32, seed=0, detection=detection, proposals=proposals
    )


@pytest.fixture
def tiny_detector(tiny_model: Any) -> ControlledDetector:
    """A fresh controllable wrapper around a CPU detector of the tiny model."""
    from app.inference.detector import Detector

    return ControlledDetector(Detector(tiny_model, "cpu"))


def service_settings(**overrides: Any) -> Any:
    """Settings for tests: no environment or .env read, small pools, CPU."""
    from app.service.settings import Settings

    values: dict[str, Any] = {
        "model_name": "tiny-random",
        "device": "cpu",
        "queue_size": 8,
        "request_timeout_s": 30.0,
        "proposal_workers": 2,
        "max_batch_size": 8,
        "batch_wait_ms": 2.0,
        "log_level": "INFO",
        "grpc_port": 0,  # off: tests that want the gRPC server pick a free port
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def wait_ready(client: Any, timeout_s: float = 60.0) -> None:
    """Poll ``/readyz`` until 200 (fails the test after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    pytest.fail(f"service not ready after {timeout_s} s: {client.get('/readyz').json()}")


class AppMaker:
    """Builds a service app around a given detector (``loader``) and settings overrides."""

    def __init__(self, detector: ControlledDetector) -> None:
        self.detector = detector

    def app(self, *, detector: Any = None, loader: Any = None, searcher: Any = None,
            **settings: Any) -> Any:  # fmt: skip
        from app.service.factory import create_app

        chosen = detector or self.detector
        return create_app(
            service_settings(**settings),
            detector_loader=loader or (lambda _settings: chosen),
            searcher=searcher,
        )

    @contextlib.contextmanager
    def client(self, *, ready: bool = True, **kwargs: Any) -> Iterator[Any]:
        """``with TestClient(app) as client`` (the lifespan runs), waiting for readiness."""
        from fastapi.testclient import TestClient

        with TestClient(self.app(**kwargs)) as client:
            if ready:
                wait_ready(client)
            yield client


@pytest.fixture
def make_app(tiny_detector: ControlledDetector) -> AppMaker:
    """Factory of apps and clients on the tiny detector (see :class:`AppMaker`)."""
    return AppMaker(tiny_detector)


@pytest.fixture
def client(make_app: AppMaker) -> Iterator[Any]:
    """A ready TestClient on the tiny model with default test settings."""
    with make_app.client() as test_client:
        yield test_client


class ServiceKit:
    """Service helpers for module-scoped fixtures, handed out by the ``service`` fixture."""

    settings = staticmethod(service_settings)
    wait_ready = staticmethod(wait_ready)
    ControlledDetector = ControlledDetector


@pytest.fixture(scope="session")
def service() -> ServiceKit:
    """Helpers to build settings and wait for readiness (see :class:`ServiceKit`)."""
    return ServiceKit()
