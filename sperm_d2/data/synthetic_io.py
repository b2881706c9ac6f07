"""Write synthetic scenes (sperm_d2.data.synthetic) to disk: PNG + labelme JSON pairs, single-head
crops in class folders (the SMIDS layout) or a microscope video.

Heads are labelled with their kind (``normal``, ``tapered``, ``pyriform``, ``amorphous``), which the
default label map sends to good/bad, so the synthetic data also exercises the label map.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sperm_d2.atomic import atomic_path
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.data.problems import check_seed
from sperm_d2.data.synthetic import render_scene, render_scene_detailed, render_video_frames
from sperm_d2.errors import InputError
from sperm_d2.image_io import MIN_IMAGE_SIDE, write_image
from sperm_d2.video_io import VideoSink

logger = logging.getLogger(__name__)

# Crop splits and the first scene seed of each: val and test never share a scene while a split
# holds at most CROP_SEED_STRIDE crops.
CROP_SPLITS = ("val", "test")
CROP_SEED_BASE = 5000
CROP_SEED_STRIDE = 1000
#: the largest image or frame side drawn: a typo'd --size would allocate gigabytes (the smallest
#: is the readers' MIN_IMAGE_SIDE: what no tool reads is no test data)
MAX_SIDE = 8192
VIDEO_SUFFIXES = (".mp4", ".avi")


def check_synthetic_args(
    output: Path,
    sides: tuple[int, ...],
    seed: int,
    count: tuple[str, int] | None = None,
    sides_flag: str = "--size",
) -> None:
    """One line naming the argument for what the generator cannot draw (before anything is
    written): a count below 1 (``(flag, value)``), a side outside [MIN_IMAGE_SIDE, MAX_SIDE], a
    negative seed, or an output folder that is a file."""
    if count is not None and count[1] < 1:
        raise InputError(f"{count[0]} {count[1]}: expected at least 1")
    if not all(MIN_IMAGE_SIDE <= side <= MAX_SIDE for side in sides):
        raise InputError(
            f"{sides_flag} {' '.join(map(str, sides))}: expected {MIN_IMAGE_SIDE} to {MAX_SIDE} px"
        )
    check_seed(seed)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output}: exists and is not a folder")


def write_synthetic_scene(out_dir: Path, stem: str, seed: int, height: int, width: int) -> int:
    """Render scene ``seed`` to ``out_dir/stem.png`` + ``stem.json``; returns its head count."""
    img, heads = render_scene_detailed(np.random.default_rng(seed), height, width)
    write_image(out_dir / f"{stem}.png", img)
    shapes = [
        {"label": kind, "points": np.round(poly, 2).tolist(), "shape_type": "polygon"}
        for kind, _, poly in heads
    ]
    write_labelme_json(out_dir / f"{stem}.json", out_dir / f"{stem}.png", height, width, shapes)
    return len(heads)


def make_synthetic_dataset(
    out_dir: str | os.PathLike, num_images: int = 160, size: int = 192, seed: int = 0
) -> Path:
    """Write ``num_images`` scenes of ``size`` x ``size`` px as labelme files under ``out_dir``.

    Scene ``i`` is rendered from seed ``seed * 1_000_003 + i``: the same call gives the same files.
    """
    out_dir = Path(out_dir)
    check_synthetic_args(out_dir, (size,), seed, ("--num-images", num_images))
    out_dir.mkdir(parents=True, exist_ok=True)
    heads = 0
    for i in tqdm(range(num_images), desc="synthetic", unit="img", disable=num_images < 200):
        heads += write_synthetic_scene(out_dir, f"syn_{i:05d}", seed * 1_000_003 + i, size, size)
    logger.info("wrote %d synthetic images (%d heads) to %s", num_images, heads, out_dir)
    return out_dir


def make_synthetic_crops(
    out_dir: str | os.PathLike, num_crops: int = 24, size: int = 170, seed: int = 0
) -> dict[str, dict[str, int]]:
    """Write ``num_crops`` single-head ``size`` x ``size`` crops per split (``val``, ``test``) as
    ``out_dir/<split>/{normal,abnormal}/crop_<scene seed>.png`` (the SMIDS class-folder layout).

    Split ``k`` uses scene seeds ``5000 + 1000 * k + seed * 1_000_003 + i``, so the same call
    gives the same files. A scene whose head did not fit is left out and counted as ``skipped``.
    Returns ``{split: {"normal": n, "abnormal": n, "skipped": n}}``.
    """
    if not 0 < num_crops <= CROP_SEED_STRIDE:
        raise InputError(
            f"num_crops={num_crops}: need 1..{CROP_SEED_STRIDE} crops per split "
            "(more would reuse val scenes in test)"
        )
    out_dir = Path(out_dir)
    check_synthetic_args(out_dir, (size,), seed)
    counts: dict[str, dict[str, int]] = {}
    for k, split in enumerate(CROP_SPLITS):
        counts[split] = {"normal": 0, "abnormal": 0, "skipped": 0}
        seed0 = CROP_SEED_BASE + CROP_SEED_STRIDE * k + seed * 1_000_003
        for scene in tqdm(range(seed0, seed0 + num_crops), desc=split, disable=num_crops < 200):
            img, heads = render_scene(scene, size, size, num_heads=1)
            if not heads:
                counts[split]["skipped"] += 1
                continue
            folder = "normal" if heads[0][0] == "good" else "abnormal"
            write_image(out_dir / split / folder / f"crop_{scene}.png", img)
            counts[split][folder] += 1
        logger.info("wrote %s crops to %s: %s", split, out_dir / split, counts[split])
    return counts


def write_synthetic_video(
    path: str | os.PathLike,
    *,
    num_frames: int = 60,
    height: int = 256,
    width: int = 320,
    seed: int = 7,
    fps: float = 10.0,
) -> Path:
    """Write a ``num_frames``-frame video of one drifting scene (``.mp4``: mp4v, ``.avi``: MJPG).

    The video is written next to ``path`` under a temporary name and renamed onto it when done,
    so ``path`` never holds a half-written video.
    """
    if num_frames < 1:
        raise InputError(f"{path}: num_frames={num_frames}, need at least 1 frame")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--output {path}: is a folder, not a video file")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"--output {path}: a video file needs a name ending in .mp4 or .avi")
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"--fps {fps}: expected a positive frame rate")
    check_synthetic_args(path.parent, (height, width), seed, sides_flag="--frame-size")
    with atomic_path(path) as tmp, VideoSink(tmp, fps=fps) as sink:
        for frame in render_video_frames(seed, height, width, num_frames):
            sink.write(frame)
    logger.info("wrote a %d-frame %dx%d synthetic video to %s", num_frames, width, height, path)
    return path
