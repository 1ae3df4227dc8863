"""The proposal cache: a miss computes and writes, a hit reads back without proposing, and the
proposal settings are part of the key."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from safetensors.numpy import load_file

import app.data.proposal_cache as proposal_cache
from app.data.proposal_cache import dataset_proposals, proposal_settings_key
from app.data.proposals import propose
from app.data.voc import VocDataset
from app.model.config import ProposalConfig

IDS = ("img_a", "img_b", "img_c")


def _dataset(root: Path) -> VocDataset:
    """Three small images; image k is a flat colour with red k * 10 + 1, green 200, blue 7."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for k, image_id in enumerate(IDS):
        bgr = np.zeros((30 + k, 40, 3), np.uint8)
        bgr[:] = (7, 200, k * 10 + 1)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.png"), bgr)
    (root / "ImageSets" / "Main" / "val.txt").write_text("".join(f"{i}\n" for i in IDS))
    return VocDataset(root, "val", classes=["thing"])


class _CountingProposer:
    """Stands in for selective search: boxes that encode the image it was given, and a count."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, image_rgb: np.ndarray, config: ProposalConfig) -> np.ndarray:
        height, width = image_rgb.shape[:2]
        self.calls.append((height, width))
        r, g, b = (float(v) for v in image_rgb[0, 0])
        return np.array(
            [[0, 0, width - 1, height - 1], [r, g, b, config.max_proposals]], np.float32
        )


@pytest.fixture
def proposer(monkeypatch: pytest.MonkeyPatch) -> _CountingProposer:
    fake = _CountingProposer()
    monkeypatch.setattr(proposal_cache, "propose", fake)
    return fake


def _expected(k: int, config: ProposalConfig) -> np.ndarray:
    return np.array([[0, 0, 39, 29 + k], [k * 10 + 1, 200, 7, config.max_proposals]], np.float32)


def test_miss_computes_every_image_in_rgb_and_writes_the_cache(
    tmp_path: Path, proposer: _CountingProposer
) -> None:
    dataset = _dataset(tmp_path / "voc")
    config = ProposalConfig(max_proposals=50)
    found = dataset_proposals(dataset, config, tmp_path / "cache", workers=1, progress=False)
    assert list(found) == list(IDS)
    assert sorted(proposer.calls) == [(30, 40), (31, 40), (32, 40)]
    for k, image_id in enumerate(IDS):
        np.testing.assert_array_equal(found[image_id], _expected(k, config))  # RGB order
    cache = tmp_path / "cache" / f"proposals-val-{proposal_settings_key(config)}.safetensors"
    stored = load_file(str(cache))
    assert sorted(stored) == sorted(IDS)
    for image_id in IDS:
        assert stored[image_id].dtype == np.float32
        np.testing.assert_array_equal(stored[image_id], found[image_id])


def test_hit_reads_back_identical_boxes_without_proposing(
    tmp_path: Path, proposer: _CountingProposer
) -> None:
    dataset = _dataset(tmp_path / "voc")
    config = ProposalConfig()
    first = dataset_proposals(dataset, config, tmp_path / "cache", workers=1, progress=False)
    proposer.calls.clear()
    second = dataset_proposals(dataset, config, tmp_path / "cache", workers=1, progress=False)
    assert proposer.calls == []
    assert list(second) == list(first)
    for image_id in IDS:
        assert second[image_id].dtype == np.float32
        np.testing.assert_array_equal(second[image_id], first[image_id])


def test_only_missing_images_are_computed_and_ids_keep_their_order(
    tmp_path: Path, proposer: _CountingProposer
) -> None:
    dataset = _dataset(tmp_path / "voc")
    config = ProposalConfig()
    dataset_proposals(dataset, config, tmp_path / "cache", ids=["img_b"], workers=1, progress=False)
    assert proposer.calls == [(31, 40)]
    found = dataset_proposals(
        dataset,
        config,
        tmp_path / "cache",
        ids=["img_c", "img_a", "img_b"],
        workers=1,
        progress=False,
    )
    assert sorted(proposer.calls) == [(30, 40), (31, 40), (32, 40)]  # b was not computed again
    assert list(found) == ["img_c", "img_a", "img_b"]
    assert len(load_file(str(next((tmp_path / "cache").glob("*.safetensors"))))) == 3


def test_other_proposal_settings_are_another_cache(
    tmp_path: Path, proposer: _CountingProposer
) -> None:
    dataset = _dataset(tmp_path / "voc")
    small, large = ProposalConfig(max_proposals=10), ProposalConfig(max_proposals=20)
    dataset_proposals(dataset, small, tmp_path / "cache", workers=1, progress=False)
    proposer.calls.clear()
    found = dataset_proposals(dataset, large, tmp_path / "cache", workers=1, progress=False)
    assert len(proposer.calls) == 3
    np.testing.assert_array_equal(found["img_a"], _expected(0, large))
    assert len(list((tmp_path / "cache").glob("proposals-val-*.safetensors"))) == 2


def test_settings_key_is_stable_and_changes_with_every_setting() -> None:
    base = ProposalConfig(max_side=500, max_proposals=2000, min_size=4.0)
    key = proposal_settings_key(base)
    assert len(key) == 12 and int(key, 16) >= 0
    assert (
        proposal_settings_key(ProposalConfig(max_side=500, max_proposals=2000, min_size=4.0)) == key
    )
    others = [
        ProposalConfig(max_side=400, max_proposals=2000, min_size=4.0),
        ProposalConfig(max_side=500, max_proposals=1000, min_size=4.0),
        ProposalConfig(max_side=500, max_proposals=2000, min_size=2.0),
    ]
    assert len({key, *(proposal_settings_key(c) for c in others)}) == 4


def test_worker_processes_give_what_propose_gives(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    dataset = _dataset(root)
    for k, image_id in enumerate(IDS[:2]):  # give selective search something to find
        bgr = np.full((60, 80, 3), 90, np.uint8)
        cv2.rectangle(bgr, (10 + 5 * k, 10), (40, 45), (20, 40, 220), -1)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.png"), bgr)
    config = ProposalConfig(max_side=0, max_proposals=30)
    found = dataset_proposals(
        dataset, config, tmp_path / "cache", ids=list(IDS[:2]), workers=2, progress=False
    )
    for image_id in IDS[:2]:
        expected = propose(dataset.load_rgb(image_id), config)
        np.testing.assert_array_equal(found[image_id], expected)


def test_settings_key_changes_with_the_search_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by another search method (another order, so another capped set) are never
    read as this one's."""
    key = proposal_settings_key(ProposalConfig())
    monkeypatch.setattr(proposal_cache, "SEARCH_METHOD", "another-method")
    assert proposal_settings_key(ProposalConfig()) != key
