"""Fixtures of the container tests: the Docker engine, the image built once per session by
``deploy/docker/build.sh --local-base``, and the images sent to it.

Without a reachable engine the ``container`` tests are skipped, with the reason; with
``SPP_REQUIRE_DOCKER=1`` (``.ci/run`` sets it) they fail instead, so CI never skips them.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from docker_helpers import ROOT, engine_problem, jpeg

IMAGE_TAG = os.environ.get("SPP_TEST_IMAGE", "spp-service:test")
BUILD_TIMEOUT_S = 1800


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A reachable engine, else skip (or fail under ``SPP_REQUIRE_DOCKER=1``)."""
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("SPP_REQUIRE_DOCKER") == "1":
        pytest.fail(f"SPP_REQUIRE_DOCKER=1 but {problem}", pytrace=False)
    pytest.skip(f"container tests need a Docker engine: {problem}")


@pytest.fixture(scope="session")
def service_image(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``deploy/docker/build.sh --local-base --tag IMAGE_TAG``, once per session -> the tag."""
    log_path = tmp_path_factory.mktemp("build") / "build.log"
    command = [str(ROOT / "deploy/docker/build.sh"), "--local-base", "--tag", IMAGE_TAG]
    with log_path.open("w") as log:
        status = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False
        ).returncode
    if status != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        pytest.fail(f"{' '.join(command)} exited {status}:\n{tail}", pytrace=False)
    return IMAGE_TAG


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Real photographs shipped with scikit-image, as JPEG bytes."""
    import skimage.data

    return {
        "astronaut": jpeg(skimage.data.astronaut()),
        "coffee": jpeg(skimage.data.coffee()),
        "chelsea": jpeg(skimage.data.chelsea()),
    }


@pytest.fixture(scope="session")
def shapes_scene() -> bytes:
    """A generated test image of the shipped model's own classes (it finds many boxes there,
    where a photo gives few or none), as JPEG bytes."""
    from app.data.shapes import render_sample

    sample = render_sample(20240, "test", 3)
    return jpeg(np.ascontiguousarray(sample.image_bgr[:, :, ::-1]))
