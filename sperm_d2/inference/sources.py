"""Inputs of ``tools/infer.py``: expand images/folders/globs/videos, decode images, stream videos.

Reading is at the edge of the pipeline: a corrupt file becomes an error *value* (the caller skips
and reports it), and a video is a generator that never holds more than one frame and always
releases its capture in ``finally``.
"""

import dataclasses
import glob
import os
from errno import ELOOP
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from sperm_d2.errors import InputError
from sperm_d2.file_glob import glob_files, glob_root
from sperm_d2.file_walk import walk_files

# re-exported: image decoding lives in sperm_d2.image_io (shared with data and evaluation)
from sperm_d2.image_io import (  # noqa: F401
    IMAGE_EXTS,
    MAX_IMAGE_PIXELS,
    in_debris,
    is_debris,
    not_a_regular_file,
    read_image,
)

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
    """Expand files, folders (recursively) and globs into sorted, de-duplicated ``InputFile``s
    whose samples and output names are distinct (:func:`distinct_names`).

    Returns ``(files, problems)``; each problem is ``{"path", "reason"}`` for an input that
    matched nothing, a file of unknown type named explicitly, or a folder inside an input folder
    or on a glob's way that could not be searched (unreadable, a link loop:
    :mod:`sperm_d2.file_walk`, :mod:`sperm_d2.file_glob`), each listed once.
    """
    files: dict[str, InputFile] = {}
    problems: list[dict] = []
    for spec in inputs:
        p = Path(spec)
        try:
            p.stat()
        except OSError as e:
            # missing, a glob or a link loop: the branches below say which; anything else (a
            # folder on its way it may not search, a name too long) would make is_dir() raise
            if not isinstance(e, (FileNotFoundError, NotADirectoryError)) and e.errno != ELOOP:
                problems.append({"path": spec, "reason": f"cannot read: {e.strerror or e}"})
                continue
        if p.is_dir():
            # folder debris (thumbnails, dot-files, a killed run's staging folder) is not
            # input; a broken symlink, FIFO or device named like an image is one, to be skipped
            # and listed (read_image / video_info say why), never dropped unseen
            listed, unwalked = walk_files(p, skip=is_debris)
            found = [q for q in listed if kind_of(q)]
            # a subfolder it may not read, or a link loop, is listed with the skipped files
            problems += [
                {"path": spec if w.path == p else str(w.path), "reason": w.reason} for w in unwalked
            ]
            base = p.resolve().name or "root"  # "." and "dir/" name their sample too
            for q in found:
                rel = q.relative_to(p)
                group = str(Path(base) / rel.parent) if rel.parent != Path(".") else base
                files.setdefault(
                    str(q), InputFile(str(q), kind_of(q), group, str(Path(base) / rel))
                )
            # nothing found: say what hid the images, if anything did (an input folder it could
            # not read is listed above with its own reason)
            if not found and not any(w.path == p for w in unwalked):
                reason = "folder holds no image or video"
                if unwalked:
                    reason = f"no image or video found: {unwalked[0].path}: {unwalked[0].reason}"
                problems.append({"path": spec, "reason": reason})
        elif p.is_file():
            if kind_of(p) is None:
                problems.append({"path": spec, "reason": f"unknown file type {p.suffix!r}"})
            else:
                files.setdefault(
                    str(p), InputFile(str(p), kind_of(p), p.parent.name or ".", p.name)
                )
        else:
            listed, unwalked = glob_files(spec, skip=is_debris)
            matches = [q for q in listed if kind_of(q)]
            problems += [{"path": str(w.path), "reason": w.reason} for w in unwalked]
            for q in matches:
                files.setdefault(
                    str(q),
                    InputFile(
                        str(q), kind_of(q), q.parent.name or ".", str(Path(q.parent.name) / q.name)
                    ),
                )
            if not matches:
                reason = "no such file, folder or glob match"
                if unwalked:
                    reason = f"no match found: {unwalked[0].path}: {unwalked[0].reason}"
                problems.append({"path": spec, "reason": reason})
    # two inputs over one unreadable folder: listed once
    unique = {(p["path"], p["reason"]): p for p in problems}
    return distinct_names(list(files.values())), list(unique.values())


def _key(relpath: str) -> str:
    """What an output name is derived from: the relative path without its extension (outputs
    change it: ``x.jpg`` -> ``overlays/x.png``), case-folded (case-insensitive file systems)."""
    return str(Path(relpath).with_suffix("")).casefold()


def distinct_names(files: list[InputFile]) -> list[InputFile]:
    """``files`` with distinct samples and output names:

    * two sample folders of one name (``a/sample``, ``b/sample``) are named by as many of their
      parent folders as tell them apart (``a/sample``, ``b/sample``), never merged;
    * two inputs whose outputs would share a name (``x.png`` and ``x.jpg`` in one folder, or
      ``a/x.png`` and ``b/x.png`` named as files) keep their sample folder in the name and then
      their extension in the stem (``x_png.png``, ``x_jpg.jpg``).
    """
    folder = {f.path: Path(os.path.abspath(f.path)).parent for f in files}
    depth = {}
    for f in files:  # sample folder -> how many of its path parts name it
        depth[folder[f.path]] = max(depth.get(folder[f.path], 0), len(Path(f.group).parts))

    def label(d: Path) -> str:
        return "/".join(d.parts[-depth[d] :]) if depth[d] <= len(d.parts) else str(d)

    first = dict(depth)
    for _ in range(64):  # each round lengthens the names of folders that share one
        by_label: dict[str, set[Path]] = {}
        for d in depth:
            by_label.setdefault(label(d), set()).add(d)
        shared = [d for ds in by_label.values() if len(ds) > 1 for d in ds]
        grow = [d for d in shared if depth[d] < len(d.parts)]
        if not grow:
            break
        for d in grow:
            depth[d] += 1
    out = []
    for f in files:
        name = Path(f.path).name
        d = folder[f.path]
        new_group = label(d) if depth[d] != first[d] else f.group
        prefixed = f.relpath == str(Path(f.group) / name)
        relpath = str(Path(new_group) / name) if prefixed else f.relpath
        out.append(dataclasses.replace(f, group=new_group, relpath=relpath))
    for rename in (_with_sample, _with_extension, _with_number):
        keys: dict[str, int] = {}
        for f in out:
            keys[_key(f.relpath)] = keys.get(_key(f.relpath), 0) + 1
        out = [rename(f, i) if keys[_key(f.relpath)] > 1 else f for i, f in enumerate(out)]
    return out


def _with_sample(f: InputFile, i: int) -> InputFile:
    name = Path(f.path).name
    return dataclasses.replace(f, relpath=str(Path(f.group) / name)) if f.relpath == name else f


def _with_extension(f: InputFile, i: int) -> InputFile:
    rel = Path(f.relpath)
    return dataclasses.replace(
        f, relpath=str(rel.with_name(f"{rel.stem}_{rel.suffix[1:]}{rel.suffix}"))
    )


def _with_number(f: InputFile, i: int) -> InputFile:
    rel = Path(f.relpath)
    return dataclasses.replace(f, relpath=str(rel.with_name(f"{rel.stem}_{i}{rel.suffix}")))


def check_inputs(inputs: list[str]) -> list[InputFile]:
    """:func:`expand_inputs` for a command line: an input that names nothing usable (a typo, a
    glob matching nothing, an empty folder, a file of unknown type) fails the run before any
    work, in one line naming it (and counting the others), instead of becoming a skip. A folder
    inside an input folder that could not be walked is not a refusal: the run lists it."""
    files, problems = expand_inputs(inputs)
    refused: dict[str, dict] = {}
    for p in problems:
        if p["path"] in inputs:
            refused.setdefault(p["path"], p)
    if refused:
        first, more = next(iter(refused.values())), len(refused) - 1
        others = f" (and {more} more input{'s' * (more > 1)} like it)" if more else ""
        raise InputError(f"--input {first['path']}: {first['reason']}{others}")
    return files


def input_anchors(spec: str) -> list[Path]:
    """What an ``--input`` reads, for output-overlap checks: the file or folder it names; for a
    recursive glob (``**``) the folder its pattern starts in; for any other glob the files it
    matches (an output folder beside them is fine, one holding them is not)."""
    p = Path(spec)
    if p.exists() or not glob.has_magic(spec):
        return [p]
    if "**" not in spec:
        return [Path(m) for m in sorted(glob.glob(spec))]
    return [glob_root(spec)]


def video_info(path: str | os.PathLike) -> dict:
    """``{"fps", "frames", "width", "height"}`` of a video, or raise ``ValueError`` (unreadable;
    a FIFO or device is refused unopened: FFmpeg would block on it)."""
    special = not_a_regular_file(path)
    if special:
        raise ValueError(special)
    try:  # OpenCV says "cannot open" for a file it may not read, too: say which it is
        with open(path, "rb") as f:
            if not f.read(1):
                raise ValueError("empty file")
    except OSError as e:
        raise ValueError(f"cannot read: {e.strerror or e}") from None
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError("cannot open video (truncated, corrupt or unsupported format)")
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


class VideoFrames:
    """Iterate ``(frame_index, BGR frame)`` over every ``stride``-th frame of a video, one frame
    in memory; ``frames_read`` counts the frames read or skipped so far, so a caller can tell a
    video that ended before its header's frame count (truncated) from a complete one.

    A video whose frame size changes mid-stream stops at the first frame of another size, with
    ``size_change`` saying where: its heads would be measured at another pixel scale, and the
    annotated video (one frame size) would rescale them silently.
    """

    def __init__(self, path: str | os.PathLike, stride: int = 1) -> None:
        if stride < 1:
            raise InputError(f"frame stride must be >= 1, got {stride}")
        self.path, self.stride, self.frames_read = str(path), stride, 0
        self.size_change: str | None = None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        cap = cv2.VideoCapture(self.path)
        try:
            if not cap.isOpened():
                raise ValueError(f"{self.path}: cannot open video")
            index, first = 0, None
            while True:
                if index % self.stride == 0:
                    ok, frame = cap.read()
                    if not ok:
                        return
                    size = frame.shape[:2]
                    first = first if index else size
                    if size != first:
                        self.size_change = (
                            f"frame {index} is {size[1]}x{size[0]} px, the video began at "
                            f"{first[1]}x{first[0]}"
                        )
                        return
                    self.frames_read = index + 1
                    yield index, frame
                elif not cap.grab():  # skip without decoding into a numpy array
                    return
                else:
                    self.frames_read = index + 1
                index += 1
        finally:
            cap.release()


def read_video_frames(path: str | os.PathLike, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, BGR frame)`` for every ``stride``-th frame, one frame in memory."""
    return iter(VideoFrames(path, stride))
