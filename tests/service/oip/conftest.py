"""A fake engine with fixed answers, and the protocol's HTTP and gRPC servers over it, on
loopback ports, for the real ``tritonclient`` to talk to."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException

from app.service.detection_options import DetectionParams as DetectParams
from app.service.oip.grpc_server import OipGrpcServer
from app.service.oip.http import create_oip_router
from app.service.oip.protocol_errors import OipError
from app.service.oip.spp_backend import LoadedModel, OneModel, SppBackend

MODEL = "shapes"
CLASSES = ("circle", "square", "triangle")
VERSION = "7"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
API_KEY = "sesame"


@dataclass(frozen=True)
class FakeDetection:
    label: str
    class_id: int
    confidence: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class FakePrediction:
    label: str
    class_id: int
    probability: float


#: What the fake engine finds in every image, best first.
DETECTIONS = (
    FakeDetection("square", 1, 0.875, (1.5, 2.25, 30.0, 40.5)),
    FakeDetection("circle", 0, 0.3, (0.0, 0.0, 10.0, 12.0)),
)
#: The fake classification, deliberately not in class order.
PREDICTIONS = (
    FakePrediction("triangle", 2, 0.125),
    FakePrediction("circle", 0, 0.625),
    FakePrediction("square", 1, 0.25),
)


class FakeImageError(Exception):
    """Raised by the fake engine for anything but a PNG (as the real decoder would, 415)."""


@dataclass
class FakeEngine:
    """Fixed detections and probabilities; remembers what it was asked."""

    is_ready: bool = True
    calls: list[tuple[str, bytes, DetectParams | None, tuple[int, ...] | None]] = field(
        default_factory=list
    )

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def loaded_model(self) -> LoadedModel | None:
        return LoadedModel(VERSION, CLASSES) if self.is_ready else None

    def _check(self, image: bytes) -> None:
        if not image.startswith(PNG_MAGIC):
            raise FakeImageError("unsupported image format")

    async def detect(
        self, image: bytes, params: DetectParams, class_ids: tuple[int, ...] | None
    ) -> Sequence[FakeDetection]:
        self._check(image)
        self.calls.append(("detect", image, params, class_ids))
        return DETECTIONS

    async def classify(self, image: bytes) -> Sequence[FakePrediction]:
        self._check(image)
        self.calls.append(("classify", image, None, None))
        return PREDICTIONS


def translate(exc: Exception) -> OipError | None:
    """The fake engine's errors -> the protocol's (what the service does for ImageError)."""
    if isinstance(exc, FakeImageError):
        return OipError(415, str(exc))
    return None


def require_key(x_api_key: str | None = Header(None)) -> None:
    if x_api_key != API_KEY:
        raise HTTPException(401, "missing API key" if x_api_key is None else "invalid API key")


def make_backend(engine: FakeEngine, max_image_bytes: int = 1 << 20) -> SppBackend:
    return SppBackend(
        OneModel(MODEL, engine), server_version="9.9", max_image_bytes=max_image_bytes
    )


def make_app(
    engine: FakeEngine, *, api_key: bool = False, max_body_bytes: int = 2 << 20
) -> FastAPI:
    app = FastAPI()
    router = create_oip_router(
        make_backend(engine),
        max_body_bytes=max_body_bytes,
        translate_error=translate,
        dependencies=[Depends(require_key)] if api_key else [],
    )
    app.include_router(router)
    return app


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_http(app: FastAPI, lifespan: str = "off") -> Iterator[str]:
    """``app`` under uvicorn in a thread on a loopback port (``lifespan="on"``: its lifespan
    runs, and uvicorn starts serving once its start-up is done); yields ``host:port``."""
    import uvicorn

    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def serve_grpc(engine: FakeEngine, **options: Any) -> Iterator[str]:
    """The gRPC server over ``engine`` on its own event loop thread; yields ``host:port``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = OipGrpcServer(
        make_backend(engine), host="127.0.0.1", port=0, translate_error=translate, **options
    )
    try:
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(20)
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(autouse=True)
def _fresh_engine(engine: FakeEngine) -> Iterator[None]:
    engine.is_ready = True
    engine.calls.clear()
    yield
    engine.is_ready = True


@pytest.fixture(scope="module")
def http_url(engine: FakeEngine) -> Iterator[str]:
    with serve_http(make_app(engine)) as url:
        yield url


@pytest.fixture(scope="module")
def grpc_url(engine: FakeEngine) -> Iterator[str]:
    with serve_grpc(engine) as url:
        yield url


@pytest.fixture(scope="session")
def png() -> bytes:
    """A real small PNG (the fake engine only checks its signature)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 16), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


class OipKit:
    """The fake's constants and the server helpers, handed out by the ``oip`` fixture."""

    model = MODEL
    classify_model = MODEL + "-classify"
    classes = CLASSES
    version = VERSION
    detections = DETECTIONS
    predictions = PREDICTIONS
    api_key = API_KEY
    FakeEngine = FakeEngine
    make_app = staticmethod(make_app)
    serve_http = staticmethod(serve_http)
    serve_grpc = staticmethod(serve_grpc)


@pytest.fixture(scope="session")
def oip() -> OipKit:
    return OipKit()


# --------------------------------------------------------------------------- the real service


#: ``/detect`` options, sent as v2 request parameters and as ``/detect`` query parameters.
DETECT_OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "keep_all": {"min_confidence": 0.0},
    "several": {
        "min_confidence": 0.0, "scales": "multi", "nms_iou": 0.4, "max_detections": 7,
        "classes": "triangle,circle", "max_proposals": 120,
    },
}  # fmt: skip


@dataclass(frozen=True)
class LiveService:
    """The real service on loopback: ``http`` and ``grpc`` are ``host:port``."""

    http: str
    grpc: str
    model: str
    classify_model: str
    version: str
    classes: tuple[str, ...]
    options = DETECT_OPTIONS

    def _post(self, route: str, data: bytes, params: dict[str, Any]) -> dict[str, Any]:
        import httpx

        response = httpx.post(
            f"http://{self.http}{route}",
            files={"image": ("upload", data, "application/octet-stream")},
            params={name: str(value) for name, value in params.items()},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def detect_route(self, data: bytes, params: dict[str, Any]) -> dict[str, np.ndarray]:
        """``POST /detect``'s detections as the v2 outputs should carry them: ``BOXES``
        float32 [N, 4], ``SCORES`` float32 [N], ``CLASS_IDS`` int64 [N], ``LABELS`` [N] str."""
        detections = self._post("/detect", data, params)["detections"]
        return {
            "BOXES": np.array(
                [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in detections], np.float32
            ).reshape(-1, 4),
            "SCORES": np.array([d["confidence"] for d in detections], np.float32),
            "CLASS_IDS": np.array([d["class_id"] for d in detections], np.int64),
            "LABELS": np.array([d["label"] for d in detections], dtype=object),
        }

    def classify_route(self, data: bytes) -> np.ndarray:
        """``POST /classify?top_k=K``'s probabilities, float32 [K] in class order."""
        body = self._post("/classify", data, {"top_k": len(self.classes)})
        by_label = {p["label"]: p["probability"] for p in body["predictions"]}
        return np.array([by_label[name] for name in self.classes], np.float32)


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def live_service(tiny_model: Any, service: Any) -> Iterator[LiveService]:
    """``create_app`` (the tiny random model on CPU, real decoding and selective search) under
    uvicorn with its lifespan: HTTP, and the gRPC server the lifespan starts on ``GRPC_PORT``."""
    import httpx

    from app.inference.detector import Detector
    from app.service.factory import create_app

    detector = Detector(tiny_model, "cpu")
    grpc_port = free_port()
    settings = service.settings(model_name="tiny", grpc_port=grpc_port)
    app = create_app(settings, detector_loader=lambda _: detector)  # real selective search
    with serve_http(app, lifespan="on") as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"http://{url}/v2/health/ready").status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail("the service did not become ready")
            time.sleep(0.05)
        assert app.state.oip.grpc_port == grpc_port
        yield LiveService(
            http=url,
            grpc=f"127.0.0.1:{grpc_port}",
            model="tiny",
            classify_model="tiny-classify",
            version=tiny_model.version,
            classes=tuple(tiny_model.classes),
        )


def photo_jpeg() -> bytes:
    """A real photograph (scikit-image's astronaut, 512 x 512) as JPEG."""
    import io
    from pathlib import Path

    import skimage.data
    from PIL import Image

    path = Path(skimage.data.__file__).parent / "astronaut.png"
    if not path.is_file():
        pytest.skip("scikit-image's sample photograph is not installed")
    out = io.BytesIO()
    Image.open(path).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="session")
def pictures(images: Any) -> dict[str, bytes]:
    """``scene_png``: a small generated picture; ``photo_jpeg``: a real photograph."""
    return {
        "scene_png": images.encode(images.scene(96, 72, seed=3), "PNG"),
        "photo_jpeg": photo_jpeg(),
    }
