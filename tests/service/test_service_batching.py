"""The inference worker alone: batching, failure isolation, OOM, deadlines, drain."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

from app.inference.detector import DetectionResult, DetectOptions, Prediction
from app.service.batching import (
    AdmissionGate,
    DeadlineExceeded,
    InferenceFailed,
    InferenceOutOfMemory,
    InferenceWorker,
    Overloaded,
    ShuttingDown,
)


class EchoDetector:
    """Answers each image with its first pixel value as ``num_proposals``; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_on: set[int] = set()  # images whose first pixel is here make a call fail
        self.failures: list[BaseException] = []
        self.gate: threading.Event | None = None
        self.delay_s = 0.0

    def _enter(self, kind: str, images: Sequence[np.ndarray]) -> None:
        self.calls.append((kind, len(images)))
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay_s)
        if self.failures:
            raise self.failures.pop(0)
        if any(int(image[0, 0, 0]) in self.fail_on for image in images):
            raise ValueError("bad image")

    def detect(
        self, images: Sequence[np.ndarray], proposals: Sequence[np.ndarray], options: Any
    ) -> list[DetectionResult]:
        self._enter("detect", images)
        assert len(images) == len(proposals) == len(options)
        return [DetectionResult([], int(image[0, 0, 0]), [1], 1, 1, {}) for image in images]

    def classify(
        self,
        images: Sequence[np.ndarray],
        top_k: int = 5,
        views: str = "full",
        proposals: Sequence[np.ndarray] | None = None,
    ) -> list[list[Prediction]]:
        self._enter("classify" if views == "full" else f"classify-{views}", images)
        assert (proposals is not None) == (views == "detect"), "windows only to classify by them"
        # Each job's windows reach the detector: their count is the second prediction's id.
        counts = [1] * len(images) if proposals is None else [len(p) for p in proposals]
        return [
            [Prediction(f"c{k}", n if k == 1 else k, 1.0 / (k + 1)) for k in range(top_k)]
            for n in counts
        ]


def image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, dtype=np.uint8)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


async def make_worker(detector: EchoDetector, **kwargs: Any) -> InferenceWorker:
    settings = {"queue_size": 16, "max_batch_size": 8, "batch_wait_s": 0.05, **kwargs}
    worker = InferenceWorker(detector, **settings)  # type: ignore[arg-type]
    worker.start()
    return worker


async def detect(worker: InferenceWorker, value: int, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    boxes = np.zeros((1, 4), np.float32)
    return await worker.detect(image(value), boxes, DetectOptions(), deadline=deadline)


def test_requests_arriving_together_share_batches() -> None:
    detector = EchoDetector()

    async def scenario() -> list[Any]:
        worker = await make_worker(detector, max_batch_size=3)
        outcomes = await asyncio.gather(*(detect(worker, v) for v in range(5)))
        await worker.stop()
        return outcomes

    outcomes = run(scenario())
    assert [o.value.num_proposals for o in outcomes] == [0, 1, 2, 3, 4]
    assert detector.calls == [("detect", 3), ("detect", 2)]
    assert [o.batch_size for o in outcomes] == [3, 3, 3, 2, 2]
    assert all(o.queue_ms >= 0 and o.inference_ms >= 0 for o in outcomes)


def test_detect_and_classify_in_one_batch() -> None:
    detector = EchoDetector()

    async def scenario() -> tuple[Any, Any]:
        worker = await make_worker(detector)
        deadline = asyncio.get_running_loop().time() + 10
        found, ranked = await asyncio.gather(
            detect(worker, 7), worker.classify(image(1), 2, deadline=deadline)
        )
        await worker.stop()
        return found, ranked

    found, ranked = run(scenario())
    assert found.value.num_proposals == 7
    assert [p.label for p in ranked.value] == ["c0", "c1"]
    assert sorted(detector.calls) == [("classify", 1), ("detect", 1)]


def test_classify_view_modes_in_one_batch_get_one_call_each() -> None:
    detector = EchoDetector()

    async def scenario() -> list[Any]:
        worker = await make_worker(detector)
        deadline = asyncio.get_running_loop().time() + 10
        outcomes = await asyncio.gather(
            worker.classify(image(1), 1, deadline=deadline),
            worker.classify(image(2), 3, deadline=deadline, views="multi"),
            worker.classify(image(3), 2, deadline=deadline),
        )
        await worker.stop()
        return outcomes

    first, multi, third = run(scenario())
    assert [len(o.value) for o in (first, multi, third)] == [1, 3, 2]
    assert sorted(detector.calls) == [("classify", 2), ("classify-multi", 1)]


def test_classify_by_detection_carries_each_images_windows() -> None:
    detector = EchoDetector()

    async def scenario() -> list[Any]:
        worker = await make_worker(detector)
        deadline = asyncio.get_running_loop().time() + 10
        windows = [np.zeros((n, 4), np.float32) for n in (5, 9)]
        outcomes = await asyncio.gather(
            worker.classify(image(1), 2, deadline=deadline, views="detect", proposals=windows[0]),
            worker.classify(image(2), 2, deadline=deadline, views="detect", proposals=windows[1]),
            worker.classify(image(3), 2, deadline=deadline),
        )
        await worker.stop()
        return outcomes

    five, nine, full = run(scenario())
    assert [o.value[1].class_id for o in (five, nine, full)] == [5, 9, 1]
    assert sorted(detector.calls) == [("classify", 1), ("classify-detect", 2)]


def test_a_failing_request_does_not_fail_its_batch() -> None:
    detector = EchoDetector()
    detector.fail_on = {13}

    async def scenario() -> list[Any]:
        worker = await make_worker(detector)
        outcomes = await asyncio.gather(
            *(detect(worker, v) for v in (11, 13, 17)), return_exceptions=True
        )
        await worker.stop()
        return outcomes

    good, bad, also_good = run(scenario())
    assert isinstance(bad, InferenceFailed) and isinstance(bad.__cause__, ValueError)
    assert good.value.num_proposals == 11 and also_good.value.num_proposals == 17
    assert detector.calls == [("detect", 3), ("detect", 1), ("detect", 1), ("detect", 1)]


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory"), MemoryError()])
def test_out_of_memory_fails_only_that_request(error: BaseException) -> None:
    detector = EchoDetector()

    async def scenario() -> tuple[Any, Any]:
        worker = await make_worker(detector)
        detector.failures = [error]
        with pytest.raises(InferenceOutOfMemory):
            await detect(worker, 1)
        after = await detect(worker, 2)
        # a batch that runs out of memory is retried one request at a time
        detector.failures = [error]
        both = await asyncio.gather(detect(worker, 3), detect(worker, 4))
        await worker.stop()
        return after, both

    after, both = run(scenario())
    assert after.value.num_proposals == 2
    assert [o.value.num_proposals for o in both] == [3, 4]


def test_deadline_passed_in_the_queue_never_reaches_the_detector() -> None:
    detector = EchoDetector()
    detector.gate = threading.Event()

    async def scenario() -> None:
        worker = await make_worker(detector, batch_wait_s=0.0, max_batch_size=1)
        blocking = asyncio.ensure_future(detect(worker, 1))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceeded):
            await detect(worker, 2, timeout=0.1)
        detector.gate.set()
        assert (await blocking).value.num_proposals == 1
        await worker.stop()

    run(scenario())
    assert detector.calls == [("detect", 1)]


def test_full_queue_refuses_at_once() -> None:
    detector = EchoDetector()
    detector.gate = threading.Event()

    async def scenario() -> None:
        worker = await make_worker(detector, queue_size=1, batch_wait_s=0.0, max_batch_size=1)
        running = asyncio.ensure_future(detect(worker, 1))
        await asyncio.sleep(0.05)  # taken by the worker: the queue is empty again
        queued = asyncio.ensure_future(detect(worker, 2))
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(Overloaded):
            await detect(worker, 3)
        assert time.perf_counter() - started < 0.05
        detector.gate.set()
        await asyncio.gather(running, queued)
        await worker.stop()

    run(scenario())


def test_stop_drains_the_queue_then_refuses() -> None:
    detector = EchoDetector()
    detector.delay_s = 0.05

    async def scenario() -> list[Any]:
        worker = await make_worker(detector, batch_wait_s=0.0, max_batch_size=1)
        pending = [asyncio.ensure_future(detect(worker, v)) for v in range(4)]
        await asyncio.sleep(0.01)
        await worker.stop(timeout_s=10)
        with pytest.raises(ShuttingDown):
            await detect(worker, 9)
        return [p.result().value.num_proposals for p in pending]

    assert run(scenario()) == [0, 1, 2, 3]


def test_admission_gate() -> None:
    gate = AdmissionGate(2)
    with gate.slot(), gate.slot():
        assert gate.held == 2
        with pytest.raises(Overloaded), gate.slot():
            pass
    assert gate.held == 0
    with pytest.raises(ValueError):
        AdmissionGate(0)
