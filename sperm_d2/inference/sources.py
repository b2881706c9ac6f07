"""Inputs of ``tools/infer.py``: expand images/folders/globs/videos, decode images, stream videos.

Reading is at the edge of the pipeline: a corrupt file becomes an error *value* (the caller skips
and reports it), and a video is a generator that never holds more than one frame and always
releases its capture in ``finally``.
"""

import dataclasses
import glob
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One file to process: ``kind`` is "image" or "video"; ``group`` is the sample it belongs to
    (its folder), and ``relpath`` names its outputs without clashes between folders."""

    path: str
    kind: str
    group: str
    relpath: str


def kind_of(path: str | os.PathLike) -> str | None:
    """ "image", "video" or ``None`` from the file extension."""
    ext = Path(path).suffix.lower()
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None


def expand_inputs(inputs: list[str]) -> tuple[list[InputFile], list[dict]]:
    """Expand files, folders (recursively) and globs into sorted, de-duplicated ``InputFile``s.

    Returns ``(files, problems)``; each problem is ``{"path", "reason"}`` for an input that
    matched nothing or a file of unknown type named explicitly.
    """
    files: dict[str, InputFile] = {}
    problems: list[dict] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and kind_of(q))
            base = p.resolve().name or "root"  # "." and "dir/" name their sample too
            for q in found:
                rel = q.relative_to(p)
                group = str(Path(base) / rel.parent) if rel.parent != Path(".") else base
                files.setdefault(
                    str(q), InputFile(str(q), kind_of(q), group, str(Path(base) / rel))
                )
            if not found:
                problems.append({"path": spec, "reason": "folder holds no image or video"})
        elif p.is_file():
            if kind_of(p) is None:
                problems.append({"path": spec, "reason": f"unknown file type {p.suffix!r}"})
            else:
                files.setdefault(
                    str(p), InputFile(str(p), kind_of(p), p.parent.name or ".", p.name)
                )
        else:
            matches = sorted(m for m in glob.glob(spec, recursive=True) if kind_of(m))
            for m in matches:
                q = Path(m)
                files.setdefault(
                    m,
                    InputFile(
                        m, kind_of(q), q.parent.name or ".", str(Path(q.parent.name) / q.name)
                    ),
                )
            if not matches:
                problems.append({"path": spec, "reason": "no such file, folder or glob match"})
    return list(files.values()), problems


def read_image(path: str | os.PathLike) -> tuple[np.ndarray | None, str | None]:
    """Decode an image as HxWx3 BGR uint8; return ``(image, None)`` or ``(None, reason)``."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if data.size == 0:
        return None, "empty file"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        return None, "cannot decode image (corrupt or unsupported format)"
    return image, None


def video_info(path: str | os.PathLike) -> dict:
    """``{"fps", "frames", "width", "height"}`` of a video, or raise ``ValueError`` (unreadable)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError("cannot open video")
        info = {
            "fps": float(cap.get(cv2.CAP_PROP_FPS)) or 25.0,
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        }
        ok, _ = cap.read()
        if not ok:
            raise ValueError("video has no readable frame")
        return info
    finally:
        cap.release()


def read_video_frames(path: str | os.PathLike, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, BGR frame)`` for every ``stride``-th frame, one frame in memory."""
    if stride < 1:
        raise ValueError(f"frame stride must be >= 1, got {stride}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: cannot open video")
        index = 0
        while True:
            if index % stride == 0:
                ok, frame = cap.read()
                if not ok:
                    return
                yield index, frame
            elif not cap.grab():  # skip without decoding into a numpy array
                return
            index += 1
    finally:
        cap.release()
