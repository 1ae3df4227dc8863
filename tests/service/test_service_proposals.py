"""Proposals over HTTP: reproducible answers, proposals supplied by the client (and their 422s),
the selective-search cache and its counters in /metrics."""

from __future__ import annotations

import json
import re
from typing import Any

import cv2
import numpy as np
import pytest

from app.data.proposals import propose


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """scikit-image's astronaut at 120 x 100 (RGB): more selective-search boxes than the tiny
    model's cap of 200."""
    from skimage import data

    return cv2.resize(data.astronaut(), (120, 100), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photo_png(photo: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", photo[:, :, ::-1])
    assert ok
    return encoded.tobytes()


def detect(client: Any, png: bytes, proposals: Any = None, **params: Any) -> Any:
    data = None if proposals is None else {"proposals": proposals}
    return client.post(
        "/detect", files={"image": ("x.png", png, "image/png")}, data=data, params=params
    )


def metric(client: Any, name: str) -> float:
    """The value of an unlabelled (or exactly labelled) sample in /metrics, 0 when absent."""
    text = client.get("/metrics").text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def detections_bytes(response: Any) -> bytes:
    assert response.status_code == 200, response.text
    return json.dumps(response.json()["detections"]).encode()


# ------------------------------------------------------------------------ reproducibility


def test_same_image_same_detections_byte_for_byte_and_after_a_restart(
    make_app: Any, photo: np.ndarray, photo_png: bytes
) -> None:
    with make_app.client(proposal_cache_size=0) as client:
        first = detect(client, photo_png)
        second = detect(client, photo_png)
        assert first.json()["proposals_source"] == second.json()["proposals_source"]
        assert first.json()["proposals_source"] == "selective_search"
        assert first.json()["num_proposals"] == 200  # the tiny model's cap
        assert detections_bytes(first) == detections_bytes(second)
        # The pool's proposals are those of ``propose`` in this process: supplied as the
        # client's own, they give the same detections.
        config = client.app.state.service.engine.detector.model.manifest.proposals
        windows = json.dumps(propose(photo, config).tolist())
        supplied = detect(client, photo_png, windows)
        assert supplied.json()["proposals_source"] == "client"
        assert detections_bytes(supplied) == detections_bytes(first)
    with make_app.client(proposal_cache_size=0) as restarted:  # new worker processes
        assert detections_bytes(detect(restarted, photo_png)) == detections_bytes(first)


# ------------------------------------------------------------------------- the cache


def test_cache_hits_after_detect_on_retry_other_scales_cap_and_classify(
    make_app: Any, photo_png: bytes, images: Any
) -> None:
    with make_app.client() as client:
        cold = detect(client, photo_png)
        assert cold.json()["proposals_source"] == "selective_search"
        retry = detect(client, photo_png)
        assert retry.json()["proposals_source"] == "cache"
        assert detections_bytes(retry) == detections_bytes(cold)
        multi = detect(client, photo_png, scales="multi")
        assert multi.status_code == 200 and multi.json()["proposals_source"] == "cache"
        capped = detect(client, photo_png, max_proposals=3)
        assert capped.json()["proposals_source"] == "cache"
        assert capped.json()["num_proposals"] == 3
        classify = client.post(
            "/classify",
            files={"image": ("x.png", photo_png, "image/png")},
            params={"views": "detect"},
        )
        assert classify.status_code == 200, classify.text
        assert metric(client, "spp_proposal_cache_hits_total") == 4.0
        assert metric(client, "spp_proposal_cache_misses_total") == 1.0
        assert metric(client, 'spp_proposals_total{source="cache"}') == 4.0
        assert metric(client, 'spp_proposals_total{source="selective_search"}') == 1.0
        other = detect(client, images.encode(images.scene(96, 72, seed=3), "PNG"))
        assert other.json()["proposals_source"] == "selective_search"
        assert metric(client, "spp_proposal_cache_misses_total") == 2.0
        assert metric(client, "spp_proposal_cache_entries") == 2.0


def test_cache_size_zero_turns_the_cache_off(make_app: Any, photo_png: bytes) -> None:
    with make_app.client(proposal_cache_size=0) as client:
        sources = [detect(client, photo_png).json()["proposals_source"] for _ in range(2)]
        assert sources == ["selective_search", "selective_search"]
        assert metric(client, "spp_proposal_cache_hits_total") == 0.0
        assert metric(client, "spp_proposal_cache_misses_total") == 0.0


# ------------------------------------------------------------------ client proposals


def test_client_proposals_replace_selective_search(make_app: Any, photo: np.ndarray,
                                                   photo_png: bytes) -> None:  # fmt: skip
    given = [[0, 0, 50, 40], [10.5, 12, 119, 99], [-5, -5, 200, 300]]  # the last one clipped
    with make_app.client() as client:
        response = detect(client, photo_png, json.dumps(given), min_confidence=0)
        body = response.json()
        assert response.status_code == 200, response.text
        assert body["proposals_source"] == "client" and body["num_proposals"] == 3
        detector = client.app.state.service.engine.detector
        clipped = np.array([[0, 0, 50, 40], [10.5, 12, 119, 99], [0, 0, 119, 99]], np.float32)
        [expected] = detector.inner.detect([photo], [clipped])
        assert [d["class_id"] for d in body["detections"]] == [
            d.class_id for d in expected.detections
        ]
        assert [d["confidence"] for d in body["detections"]] == pytest.approx(
            [d.confidence for d in expected.detections]
        )
        assert metric(client, "spp_proposal_cache_misses_total") == 0.0  # no search at all
        assert metric(client, 'spp_proposals_total{source="client"}') == 1.0


def test_client_proposals_as_a_file_part_and_with_a_drawn_answer(
    make_app: Any, photo_png: bytes
) -> None:
    boxes = json.dumps([[0, 0, 50, 40]]).encode()
    with make_app.client() as client:
        response = client.post(
            "/detect",
            files={
                "image": ("x.png", photo_png, "image/png"),
                "proposals": ("boxes.json", boxes, "application/json"),
            },
            params={"format": "png"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.headers["x-proposals-source"] == "client"


def test_an_empty_list_gives_no_detections(make_app: Any, photo_png: bytes) -> None:
    with make_app.client() as client:
        body = detect(client, photo_png, "[]").json()
        assert (body["num_proposals"], body["detections"]) == (0, [])
        assert body["proposals_source"] == "client"


def test_room_for_max_proposals_boxes_beyond_the_small_field_limit(
    make_app: Any, photo_png: bytes
) -> None:
    rng = np.random.default_rng(0)
    x1y1 = rng.uniform(0, 60, (2000, 2))
    boxes = np.concatenate([x1y1, x1y1 + rng.uniform(4, 50, (2000, 2))], axis=1)
    text = json.dumps(boxes.tolist())  # full float precision: about 80 bytes a box
    assert len(text) > 100_000
    with make_app.client() as client:
        response = detect(client, photo_png, text, max_proposals=2000)
        assert response.status_code == 200, response.text
        assert response.json()["num_proposals"] == 2000


BAD = [
    ("[[1, 2, 3, 4]", {}, "proposals: not valid JSON"),
    ('{"boxes": []}', {}, "proposals: expected a JSON array of [x1, y1, x2, y2] boxes"),
    ("[[1, 2, 3]]", {}, "proposals[0]: expected [x1, y1, x2, y2], 4 finite numbers"),
    ('[[0, 0, 9, 9], ["1", 2, 30, 40]]', {}, "proposals[1]: expected [x1, y1, x2, y2]"),
    ("[[NaN, 2, 30, 40]]", {}, "proposals[0]: expected [x1, y1, x2, y2], 4 finite numbers"),
    (json.dumps([[0, 0, 9, 9]] * 3), {"max_proposals": 2}, "at most 2 boxes allowed"),
    (json.dumps([[0, 0, 9, 9]] * 201), {}, "at most 200 boxes allowed (max_proposals), got 201"),
    ("[[0, 0, 9, 9], [30, 5, 30, 50]]", {}, "proposals[1]: [30, 5, 30, 50] is empty after"),
    ("[[130, 0, 150, 10]]", {}, "empty after clipping to the 120x100 image"),
]


def test_bad_proposals_are_422_and_the_service_stays_ready(make_app: Any, photo_png: bytes) -> None:
    with make_app.client() as client:
        for text, params, message in BAD:
            response = detect(client, photo_png, text, **params)
            assert response.status_code == 422, (text, response.text)
            [error] = response.json()["detail"]
            assert error["loc"] == ["body", "proposals"]
            assert message in error["msg"], (message, error["msg"])
        assert client.get("/readyz").status_code == 200
        assert detect(client, photo_png, "[[0, 0, 50, 40]]").status_code == 200
        assert detect(client, photo_png).status_code == 200


def test_proposals_over_their_byte_limit_or_the_upload_limit_are_413(
    make_app: Any, photo_png: bytes
) -> None:
    from app.service.api_models import MAX_PROPOSALS_FIELD_BYTES

    with make_app.client(max_upload_mb=1.0) as client:
        huge = "[" + " " * MAX_PROPOSALS_FIELD_BYTES + "]"
        response = detect(client, photo_png, huge)
        assert response.status_code == 413
        assert response.json() == {
            "detail": f"form field 'proposals' longer than {MAX_PROPOSALS_FIELD_BYTES} bytes"
        }
    room = 1024 * 1024 // 4 - len(photo_png)  # the image and the proposals share the limit
    with make_app.client(max_upload_mb=0.25) as client:
        response = detect(client, photo_png, "[" + " " * room + "]")
        assert response.status_code == 413
        assert response.json() == {"detail": "upload too large: the limit is 262144 bytes"}
        assert detect(client, photo_png, "[" + " " * (room - 3) + "]").status_code == 200
