"""Shared answer plumbing of the routes: answer format from ``format`` / ``Accept``, and the
``Server-Timing`` header."""

from __future__ import annotations

import pytest

from app.service.responses import ERROR_RESPONSES, choose_format, server_timing_header


@pytest.mark.parametrize(
    ("explicit", "accept", "expected"),
    [
        ("png", "application/json", "png"),
        (None, None, "json"),
        (None, "*/*", "json"),
        (None, "image/*", "json"),
        (None, "image/png", "png"),
        (None, "image/jpeg, image/png", "jpeg"),
        (None, "image/png;q=0.5, image/jpeg;q=0.9", "jpeg"),
        (None, "image/png;q=0, application/json;q=0.1", "json"),
        (None, "text/html, image/jpeg;q=0.9, */*;q=0.1", "jpeg"),
        (None, "IMAGE/PNG;q=bogus, application/json;q=0.2", "json"),
    ],
)
def test_choose_format(explicit: str | None, accept: str | None, expected: str) -> None:
    assert choose_format(explicit, accept) == expected


def test_server_timing_header_lists_stages_in_order() -> None:
    header = server_timing_header({"read": 0.5, "proposals": 12.25, "total": 20.0})
    assert header == "read;dur=0.500, proposals;dur=12.250, total;dur=20.000"
    assert server_timing_header({}) == ""


def test_error_responses_document_every_error_status() -> None:
    assert sorted(ERROR_RESPONSES) == [400, 401, 404, 413, 415, 422, 503, 504]
