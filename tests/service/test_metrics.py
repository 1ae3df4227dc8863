"""``ServiceMetrics``: what is observed is what the registry reads back."""

from __future__ import annotations

import pytest

from app.service.metrics import ServiceMetrics


def test_a_request_is_counted_and_timed_per_route() -> None:
    metrics = ServiceMetrics()
    metrics.observe_request(route="/detect", method="POST", status="200", duration_s=0.3, model="m")
    read = metrics.registry.get_sample_value
    route = {"route": "/detect", "model": "m", "protocol": "http"}
    labels = {**route, "method": "POST", "status": "200"}
    assert read("spp_requests_total", labels) == 1.0
    assert read("spp_request_duration_seconds_count", route) == 1.0
    assert read("spp_request_duration_seconds_sum", route) == pytest.approx(0.3)
    # 0.3 s falls in the 0.5 s bucket, not the 0.25 s one
    bucket = "spp_request_duration_seconds_bucket"
    assert read(bucket, {**route, "le": "0.25"}) == 0.0
    assert read(bucket, {**route, "le": "0.5"}) == 1.0


def test_stage_timings_are_seconds_and_skip_total() -> None:
    metrics = ServiceMetrics()
    metrics.observe_stages({"decode": 250.0, "conv5": 4.0, "total": 999.0})
    metrics.observe_stages({"decode": 50.0})
    read = metrics.registry.get_sample_value
    assert read("spp_stage_duration_seconds_count", {"stage": "decode"}) == 2.0
    assert read("spp_stage_duration_seconds_sum", {"stage": "decode"}) == pytest.approx(0.3)
    assert read("spp_stage_duration_seconds_sum", {"stage": "conv5"}) == pytest.approx(0.004)
    assert read("spp_stage_duration_seconds_count", {"stage": "total"}) is None


def test_each_instance_has_its_own_registry_and_renders_text() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.rejected.labels(reason="overload").inc(2)
    first.model_ready.set(1)
    assert first.registry.get_sample_value("spp_rejected_total", {"reason": "overload"}) == 2.0
    assert second.registry.get_sample_value("spp_rejected_total", {"reason": "overload"}) is None
    text = first.render().decode()
    assert 'spp_rejected_total{reason="overload"} 2.0' in text
    assert "spp_model_ready 1.0" in text
    assert first.content_type.startswith("text/plain")
