"""Selective-search proposals for a whole dataset split, computed in parallel and cached.

Proposals cost about a second per image, and training and evaluation both need them for the
same images, so they are stored once per (split, proposal settings, search method) in one
safetensors file (plain float32 arrays keyed by image id). Each image is searched in one worker
process with :func:`app.data.proposals.propose` in-process (``workers=0``): the images are the
parallelism, and the result is the one the service gives for the same pixels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from app.data.proposals import SEARCH_METHOD, propose
from app.data.voc import VocDataset
from app.model.config import ProposalConfig

log = logging.getLogger(__name__)


def proposal_settings_key(config: ProposalConfig) -> str:
    """A short stable hash of the proposal settings and of the search method
    (:data:`app.data.proposals.SEARCH_METHOD`), part of the cache file name."""
    payload = json.dumps(
        {
            "max_side": config.max_side,
            "max_proposals": config.max_proposals,
            "min_size": config.min_size,
            "method": SEARCH_METHOD,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _propose_file(args: tuple[str, str, ProposalConfig]) -> tuple[str, np.ndarray]:
    import cv2

    image_id, path, config = args
    cv2.setNumThreads(1)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: cannot read image")
    return image_id, propose(np.ascontiguousarray(image[:, :, ::-1]), config)


def dataset_proposals(
    dataset: VocDataset,
    config: ProposalConfig,
    cache_dir: Path,
    *,
    ids: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Proposals ``{image_id: ndarray[N, 4] float32}`` for ``ids`` (default: the whole split).

    Reads ``cache_dir/proposals-<split>-<settings>.safetensors`` when present and complete,
    else computes the missing images with ``workers`` processes and rewrites the cache.
    """
    ids = list(dataset.ids if ids is None else ids)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = proposal_settings_key(config)
    cache = cache_dir / f"proposals-{dataset.split}-{key}.safetensors"
    found: dict[str, np.ndarray] = {}
    if cache.is_file():
        found = load_file(str(cache))
    missing = [i for i in ids if i not in found]
    if missing:
        log.info("selective search on %d images (%d workers)", len(missing), workers)
        jobs = [(i, str(dataset.image_path(i)), config) for i in missing]
        if workers > 1:
            with mp.get_context("spawn").Pool(workers) as pool:
                for image_id, boxes in tqdm(
                    pool.imap_unordered(_propose_file, jobs, chunksize=4),
                    total=len(jobs),
                    desc=f"proposals {dataset.split}",
                    disable=not progress,
                ):
                    found[image_id] = boxes
        else:
            for job in tqdm(jobs, desc=f"proposals {dataset.split}", disable=not progress):
                image_id, boxes = _propose_file(job)
                found[image_id] = boxes
        tmp = cache.with_suffix(".tmp")
        save_file(
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in found.items()}, str(tmp)
        )
        tmp.replace(cache)
    return {i: found[i] for i in ids}
