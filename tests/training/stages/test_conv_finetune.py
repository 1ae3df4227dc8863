"""Stage 2b: conv layers fine-tuned through the pyramid pooling.

What must hold: the windows it trains on are the ranges it says; the pooled vectors it
trains on are exactly those inference computes; gradients reach the chosen conv layers and
no others; a flipped image comes with correctly flipped boxes; a cut-off run resumes to the
weights of an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.data.shapes import generate_shapes_dataset
from app.data.voc import VocDataset
from app.inference.detector import Detector
from app.model.store import SppModel, build_random_model
from app.training.datasets import DetectionImages
from app.training.recipe import ConvFinetuneConfig
from app.training.stages import conv_finetune as stage
from app.training.stages.conv5_cache import Conv5Cache
from app.training.windows import label_windows
from app.training.workdir import WorkDir

CLASSES = ["circle", "square", "triangle", "star", "hexagon", "cross"]


def _jittered(boxes: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` windows per box, shifted and scaled at random (IoUs from ~0 to ~1)."""
    out = []
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1 + 1, y2 - y1 + 1
        shift = rng.uniform(-0.8, 0.8, size=(n, 2)) * (w, h)
        scale = np.exp(rng.uniform(-0.7, 0.7, size=(n, 1)))
        cx, cy = (x1 + x2) / 2 + shift[:, 0], (y1 + y2) / 2 + shift[:, 1]
        hw, hh = scale[:, 0] * w / 2, scale[:, 0] * h / 2
        out.append(np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1))
    return np.concatenate(out).astype(np.float32)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[DetectionImages]:
    root = tmp_path_factory.mktemp("conv-finetune")
    generate_shapes_dataset(root, seed=11, n_train=4, n_val=0, n_test=0, progress=False)
    dataset = VocDataset(root, "train")
    rng = np.random.default_rng(0)
    windows = {}
    for image_id in dataset.ids:
        annotation = dataset.annotation(image_id)
        height, width = dataset.load_rgb(image_id).shape[:2]
        proposals = _jittered(annotation.boxes, rng, 40)
        proposals = np.clip(proposals, 0, [width - 1, height - 1, width - 1, height - 1])
        keep = (proposals[:, 2] > proposals[:, 0]) & (proposals[:, 3] > proposals[:, 1])
        windows[image_id] = label_windows(annotation, proposals[keep], CLASSES)
    detector = Detector(_model(), "cpu")
    return [DetectionImages(dataset, windows, Conv5Cache(root / "conv5", detector))]


def _model(seed: int = 0) -> SppModel:
    return build_random_model(CLASSES, width=0.125, fc_dim=32, seed=seed)


def _config(**update: object) -> ConvFinetuneConfig:
    base = {"iterations": 4, "windows_per_image": 16, "scales": (160, 200), "checkpoint_every": 2}
    return ConvFinetuneConfig.model_validate({**base, **update})


def test_sample_windows_draws_positives_then_background_in_their_ranges(
    parts: list[DetectionImages],
) -> None:
    config = _config(windows_per_image=20, fg_fraction=0.25)
    for image_id, windows in parts[0].windows.items():
        batch = stage.sample_windows(windows, config, np.random.default_rng(1))
        iou = torch.stack([windows.max_iou[(windows.boxes == b).all(1)].max() for b in batch.boxes])
        n_fg = int((windows.max_iou >= 0.5).sum())
        n_bg = int(((windows.max_iou >= 0.1) & (windows.max_iou < 0.5)).sum())
        assert int((batch.labels > 0).sum()) == min(n_fg, 5), image_id
        assert len(batch.labels) == min(n_fg, 5) + min(n_bg, 20 - min(n_fg, 5))
        assert bool(((iou >= 0.5) == (batch.labels > 0)).all())
        assert float(iou.min()) >= 0.1
        for box, label in zip(batch.boxes, batch.labels, strict=True):
            if label > 0:  # the class of the best-overlapping ground-truth box, + 1
                row = int((windows.boxes == box).all(1).nonzero()[0, 0])
                assert int(label) == int(windows.gt_labels[windows.best_gt[row]]) + 1


def test_flipped_boxes_frame_the_flipped_pixels() -> None:
    image = np.zeros((30, 50), np.uint8)
    image[5:12, 7:20] = 1  # columns 7..19 inclusive
    box = torch.tensor([[7.0, 5.0, 19.0, 11.0]])
    flipped = image[:, ::-1]
    cols = np.nonzero(flipped.any(0))[0]
    assert stage.flip_boxes(box, 50).tolist() == [[cols[0], 5.0, cols[-1], 11.0]]
    assert torch.equal(stage.flip_boxes(stage.flip_boxes(box, 50), 50), box)


def test_training_pools_exactly_what_inference_pools(parts: list[DetectionImages]) -> None:
    model = _model()
    detector = Detector(model, "cpu")
    part = parts[0]
    image_id = part.dataset.ids[0]
    image = part.dataset.load_rgb(image_id)
    boxes = part.windows[image_id].boxes
    with torch.no_grad():
        trained = stage.pooled_image_windows(model.net, model.manifest, image, boxes, 200)
    served, _ = detector.pooled_windows(image, boxes, (200,))
    assert torch.equal(trained, served)


def test_gradients_reach_the_chosen_conv_layers_only(parts: list[DetectionImages]) -> None:
    model = _model()
    config = _config(layers=("conv4", "conv5"))
    stage.set_trainable(model.net, config.layers)
    images = [(parts[0], i) for i in parts[0].dataset.ids]
    loss = stage._iteration_loss(
        model.net, model.manifest, images, config, np.random.default_rng(0)
    )
    loss.backward()
    trunk = model.net.trunk
    for name in ("conv4", "conv5"):
        grad = getattr(trunk, name).weight.grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    for name in ("conv1", "conv2", "conv3"):
        assert getattr(trunk, name).weight.grad is None, name
    assert model.net.det_fc8.weight.grad is not None
    assert model.net.svm.weight.grad is None


def test_the_loss_falls_when_training_on_one_batch(parts: list[DetectionImages]) -> None:
    model = _model()
    config = _config(lr=5e-3, flip=False, scales=(200,))
    optimizer = stage._start(model.net, config)
    images = [(parts[0], parts[0].dataset.ids[0]), (parts[0], parts[0].dataset.ids[1])]
    losses = []
    for _ in range(15):
        loss = stage._iteration_loss(
            model.net, model.manifest, images, config, np.random.default_rng(0)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert max(losses[-3:]) < 0.7 * losses[0], losses


def test_a_cut_off_run_resumes_to_the_uninterrupted_weights(
    parts: list[DetectionImages], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config()
    straight = _model()
    stage.conv_finetune(straight.net, straight.manifest, parts, config, WorkDir(tmp_path / "a"))

    real = stage._iteration_loss
    calls = {"n": 0}

    def cut_after_three(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    resumed = _model()
    work = WorkDir(tmp_path / "b")
    monkeypatch.setattr(stage, "_iteration_loss", cut_after_three)
    with pytest.raises(KeyboardInterrupt):
        stage.conv_finetune(resumed.net, resumed.manifest, parts, config, work)
    monkeypatch.setattr(stage, "_iteration_loss", real)
    resumed = _model()  # a new process: fresh weights, the checkpoint of iteration 2 on disk
    history = stage.conv_finetune(resumed.net, resumed.manifest, parts, config, work)
    assert [h["iteration"] for h in history] == [2, 4]
    for (name, a), (_, b) in zip(
        straight.net.state_dict().items(), resumed.net.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_load_or_conv_finetune_saves_then_loads_what_it_changed(
    parts: list[DetectionImages], tmp_path: Path
) -> None:
    config = _config(iterations=2)
    work = WorkDir(tmp_path)
    trained = _model()
    stage.load_or_conv_finetune(trained.net, trained.manifest, parts, config, work, progress=False)
    loaded = _model()
    stage.load_or_conv_finetune(loaded.net, loaded.manifest, parts, config, work, progress=False)
    assert torch.equal(loaded.net.trunk.conv5.weight, trained.net.trunk.conv5.weight)
    assert torch.equal(loaded.net.det_fc8.weight, trained.net.det_fc8.weight)
    assert not torch.equal(loaded.net.trunk.conv5.weight, _model().net.trunk.conv5.weight)
    assert torch.equal(loaded.net.trunk.conv1.weight, _model().net.trunk.conv1.weight)
