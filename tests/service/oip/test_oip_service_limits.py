"""The protocol on the real service shares the service's machinery: one batching worker, the
admission gate (503), the deadline (504), the upload limit (413), the API key (401), and the
gRPC server's life in the app's lifespan."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from typing import Any

import grpc
import pytest
import tritonclient.grpc as grpcclient
from triton_calls import grpc_image
from tritonclient.utils import InferenceServerException

MODEL = "tiny-random"  # the served name: MODEL_NAME of the test settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def infer_body(data: bytes, **parameters: Any) -> dict[str, Any]:
    """A JSON v2 inference request with ``data`` as the base64 ``IMAGE``."""
    image = {"name": "IMAGE", "datatype": "BYTES", "shape": [1]}
    body = {"inputs": [{**image, "data": [base64.b64encode(data).decode()]}]}
    return {**body, "parameters": parameters} if parameters else body


def metric(client: Any, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def wait_for(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def png(images: Any) -> bytes:
    data: bytes = images.encode(images.scene(64, 48, seed=5), "PNG")
    return data


def test_v2_and_detect_requests_share_one_batch(make_app: Any, png: bytes) -> None:
    detector = make_app.detector
    with make_app.client(batch_wait_ms=0.0) as client:
        detector.gate = threading.Event()  # the detector blocks until it is set
        answers: dict[str, Any] = {}

        def post(key: str, url: str, **kwargs: Any) -> None:
            answers[key] = client.post(url, **kwargs)

        files = {"image": ("x.png", png, "image/png")}
        first = threading.Thread(target=post, args=("first", "/detect"), kwargs={"files": files})
        threads = [first]
        threads[0].start()
        assert detector.started.wait(20)
        threads += [
            threading.Thread(target=post, args=("v2", f"/v2/models/{MODEL}/infer"),
                             kwargs={"json": infer_body(png, min_confidence=0.0)}),
            threading.Thread(target=post, args=("second", "/detect"), kwargs={"files": files}),
        ]  # fmt: skip
        for thread in threads[1:]:
            thread.start()
        wait_for(lambda: metric(client, "spp_queue_depth") == 2)
        detector.gate.set()
        for thread in threads:
            thread.join(30)
    assert {key: answer.status_code for key, answer in answers.items()} == {
        "first": 200, "v2": 200, "second": 200,
    }  # fmt: skip
    assert detector.detect_batches == [1, 2], "the v2 request rode in a batch with /detect"


def test_admission_gate_refuses_v2_over_http_and_grpc(make_app: Any, png: bytes) -> None:
    detector = make_app.detector
    grpc_port = free_port()
    with make_app.client(queue_size=1, grpc_port=grpc_port) as client:
        detector.gate = threading.Event()
        files = {"image": ("x.png", png, "image/png")}
        holder = threading.Thread(target=client.post, args=("/detect",), kwargs={"files": files})
        holder.start()
        try:
            assert detector.started.wait(20)
            busy = "server busy: too many requests in progress, retry later"
            answer = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(png))
            assert (answer.status_code, answer.json()) == (503, {"error": busy})
            assert answer.headers["retry-after"] == "1"
            with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as triton:
                with pytest.raises(InferenceServerException) as caught:
                    triton.infer(f"{MODEL}-classify", grpc_image(png))
                assert (caught.value.status(), caught.value.message()) == (
                    "StatusCode.UNAVAILABLE",
                    busy,
                )
            assert metric(client, "spp_rejected_total", reason="overload") == 2
        finally:
            detector.gate.set()
            holder.join(30)
        assert client.post(f"/v2/models/{MODEL}/infer", json=infer_body(png)).status_code == 200


def test_deadline_is_504(make_app: Any, png: bytes) -> None:
    make_app.detector.delay_s = 1.0
    with make_app.client(request_timeout_s=0.3) as client:
        answer = client.post(f"/v2/models/{MODEL}-classify/infer", json=infer_body(png))
        assert (answer.status_code, answer.json()) == (
            504,
            {"error": "request timed out after 0.3 s"},
        )
        assert metric(client, "spp_rejected_total", reason="timeout") == 1


def test_upload_limit_is_413(make_app: Any, images: Any) -> None:
    """The ``IMAGE`` element over ``MAX_UPLOAD_MB`` is refused as ``/detect``'s upload is; a
    body over the limit's base64 size and its envelope is refused before it is parsed."""
    max_mb = 0.01
    limit = int(max_mb * 1024 * 1024)  # 10485 bytes
    big = images.encode(images.scene(100, 80, seed=1), "PNG")
    body_limit = -(-limit // 3) * 4 + 64 * 1024  # the base64 of the limit and 64 KiB
    assert limit < len(big) < body_limit - 1024, len(big)
    with make_app.client(max_upload_mb=max_mb) as client:
        header = b'{"inputs":[{"name":"IMAGE","datatype":"BYTES","shape":[1],'
        header += b'"parameters":{"binary_data_size":%d}}]}' % (len(big) + 4)
        body = header + len(big).to_bytes(4, "little") + big
        answer = client.post(
            f"/v2/models/{MODEL}/infer",
            content=body,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert (answer.status_code, answer.json()) == (
            413,
            {"error": f"upload too large: the limit is {limit} bytes"},
        )
        answer = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(bytes(body_limit)))
        assert (answer.status_code, answer.json()) == (
            413,
            {"error": f"request body too large: the limit is {body_limit} bytes"},
        )


def test_api_key_guards_v2_inference_over_http_and_grpc(make_app: Any, png: bytes) -> None:
    grpc_port = free_port()
    with make_app.client(api_key="sesame", grpc_port=grpc_port) as client:
        assert client.get("/v2/health/ready").status_code == 200, "probes stay open"
        answer = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(png))
        assert (answer.status_code, answer.json()) == (401, {"error": "missing API key"})
        answer = client.post(
            f"/v2/models/{MODEL}/infer", json=infer_body(png), headers={"X-API-Key": "sesame"}
        )
        assert answer.status_code == 200
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as triton:
            with pytest.raises(InferenceServerException) as caught:
                triton.infer(MODEL, grpc_image(png))
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
            bearer = {"authorization": "Bearer sesame"}
            result = triton.infer(MODEL, grpc_image(png), headers=bearer)
            assert result.as_numpy("BOXES") is not None


def test_grpc_server_lives_and_dies_with_the_app(make_app: Any) -> None:
    with make_app.client(grpc_port=0) as client:
        assert client.app.state.oip.grpc_port is None, "GRPC_PORT=0: no gRPC server"
    port = free_port()
    with make_app.client(grpc_port=port) as client:
        assert client.app.state.oip.grpc_port == port
        with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as triton:
            assert triton.is_server_ready()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    with contextlib.closing(channel), pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=1.0)


def test_a_taken_grpc_port_fails_the_start(make_app: Any) -> None:
    """A second service on the same GRPC_PORT fails to start, rather than sharing the port's
    calls with the first (gRPC's default SO_REUSEPORT would let it bind)."""
    port = free_port()
    first = make_app.client(grpc_port=port, ready=False)
    second = make_app.client(grpc_port=port, ready=False)
    with first, pytest.raises(RuntimeError, match="Failed to bind"), second:
        pass
