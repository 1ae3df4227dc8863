"""``RequestContextMiddleware`` on a two-route app: request ids, metrics, the access log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from app.service.metrics import ServiceMetrics
from app.service.middleware import REQUEST_ID_HEADER, RequestContextMiddleware


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics()


@pytest.fixture
def client(metrics: ServiceMetrics) -> Iterator[TestClient]:
    app = FastAPI()
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    @app.get("/items/{item_id}")
    async def item(item_id: int, request: Request) -> dict[str, Any]:
        request.state.timings_ms = {"decode": 1.5}
        return {"request_id": request.state.request_id, "in_flight": in_flight(metrics)}

    @app.get("/fail/{status}")
    async def fail(status: int) -> None:
        raise HTTPException(status, "no")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def in_flight(metrics: ServiceMetrics) -> float | None:
    return metrics.registry.get_sample_value("spp_in_flight_requests")


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "app.service.access"]


def test_a_valid_request_id_is_echoed_and_seen_by_the_route(client: TestClient) -> None:
    response = client.get("/items/3", headers={REQUEST_ID_HEADER: "abc-123:x.y_z"})
    assert response.headers[REQUEST_ID_HEADER] == "abc-123:x.y_z"
    assert response.json()["request_id"] == "abc-123:x.y_z"


@pytest.mark.parametrize("sent", [None, "", "has space", "a" * 129, "semi;colon"])
def test_a_missing_or_unsafe_request_id_is_replaced(client: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {REQUEST_ID_HEADER: sent}
    response = client.get("/items/3", headers=headers)
    generated = response.headers[REQUEST_ID_HEADER]
    assert re.fullmatch(r"[0-9a-f]{32}", generated), generated
    assert response.json()["request_id"] == generated


def test_requests_are_counted_by_route_template_and_status(
    client: TestClient, metrics: ServiceMetrics
) -> None:
    assert client.get("/items/1").json()["in_flight"] == 1.0
    client.get("/items/2")
    client.get("/fail/404")
    client.get("/nowhere")
    read = metrics.registry.get_sample_value
    count = "spp_requests_total"
    http = {"model": "", "protocol": "http"}
    assert read(count, {"route": "/items/{item_id}", "method": "GET", "status": "200", **http}) == 2
    assert read(count, {"route": "/fail/{status}", "method": "GET", "status": "404", **http}) == 1
    assert read(count, {"route": "unmatched", "method": "GET", "status": "404", **http}) == 1.0
    latency = "spp_request_duration_seconds_count"
    assert read(latency, {"route": "/items/{item_id}", **http}) == 2.0
    assert in_flight(metrics) == 0.0


def test_one_access_log_line_per_request_with_its_stage_timings(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.service.access")
    client.get("/items/7?secret=1", headers={REQUEST_ID_HEADER: "req-1"})
    [record] = access_records(caplog)
    fields = record.fields  # type: ignore[attr-defined]
    assert record.levelno == logging.INFO and record.getMessage() == "request"
    assert {k: v for k, v in fields.items() if k != "duration_ms"} == {
        "request_id": "req-1",
        "method": "GET",
        "route": "/items/{item_id}",
        "path": "/items/7",
        "status": 200,
        "timings_ms": {"decode": 1.5},
    }
    assert fields["duration_ms"] >= 0.0


@pytest.mark.parametrize(
    ("status", "level"), [(404, logging.INFO), (503, logging.WARNING), (500, logging.ERROR)]
)
def test_log_level_follows_the_status(
    client: TestClient, caplog: pytest.LogCaptureFixture, status: int, level: int
) -> None:
    caplog.set_level(logging.INFO, logger="app.service.access")
    client.get(f"/fail/{status}")
    [record] = access_records(caplog)
    assert record.levelno == level
    assert record.fields["status"] == status  # type: ignore[attr-defined]
    assert "timings_ms" not in record.fields  # type: ignore[attr-defined]


def test_an_unhandled_exception_is_counted_and_logged_as_500(
    client: TestClient, metrics: ServiceMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.service.access")
    assert client.get("/crash").status_code == 500
    labels = {"route": "/crash", "method": "GET", "status": "500", "model": "", "protocol": "http"}
    assert metrics.registry.get_sample_value("spp_requests_total", labels) == 1.0
    assert in_flight(metrics) == 0.0
    [record] = access_records(caplog)
    assert record.levelno == logging.ERROR
