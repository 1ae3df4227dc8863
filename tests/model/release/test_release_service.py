"""An imported release served over HTTP: windows sent as client proposals score through
``POST /detect`` (``nms_iou=1``, ``min_confidence=0``) as ``reference.py`` scores them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
from fastapi.testclient import TestClient
from reference import reference_detect_windows
from release_files import make_release, write_release

from app.model.preprocess import resize_to_scale
from app.model.release import import_spp_net_release
from app.service.factory import create_app
from app.service.settings import Settings

SCALES = (160, 240, 360)


def test_client_proposals_score_through_detect_as_the_reference(tmp_path: Path) -> None:
    arrays = make_release(5, spm_divs=(1, 2, 3, 6), with_bbox=True, fc_dims=(16, 12))
    files = write_release(tmp_path / "files", arrays, caffe_layout="v1", mat_format="v73")
    store = tmp_path / "store"
    import_spp_net_release(
        files["spp_model"],
        name="release",
        store=store,
        conv_weights=files["conv"],
        bbox_regressor=files["bbox_reg"],
        scales=SCALES,
    )
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    windows = np.array(
        [[0, 0, 63, 47], [4, 6, 30, 40], [20, 10, 60, 30], [10, 20, 25, 35], [33, 2, 50, 44]],
        dtype=np.float32,
    )
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model_store=store,
        model_name="release",
        device="cpu",
        proposal_workers=1,
        grpc_port=0,
        warm_up=False,
    )
    png = cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        response = client.post(
            "/detect",
            params={"nms_iou": 1, "min_confidence": 0, "scales": "multi"},
            files={"image": ("i.png", png, "image/png")},
            data={"proposals": json.dumps(windows.tolist())},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["proposals_source"] == "client"
        assert body["num_proposals"] == len(windows)
        classify = client.post(
            "/classify", files={"image": ("i.png", png, "image/png")}, params={"views": "full"}
        )
        assert classify.status_code == 422, classify.text
        assert "views=detect" in classify.text
        assert client.get("/readyz").status_code == 200

    def resize(img: np.ndarray, scale: int) -> np.ndarray:
        return resize_to_scale(img, scale, 2000)[0]

    expected = reference_detect_windows(arrays, image, windows, SCALES, resize)
    num_classes = len(arrays.classes)
    # Every window yields one detection per class (no NMS, no threshold): compare the sorted
    # raw SVM scores per class.
    for k, label in enumerate(arrays.classes):
        got = sorted(d["score"] for d in body["detections"] if d["class_id"] == k)
        assert [d["label"] for d in body["detections"] if d["class_id"] == k] == [label] * len(
            windows
        )
        want = sorted(float(s) for s in expected.scores[:, k])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert len(body["detections"]) == len(windows) * num_classes
