"""Crash-safe checkpoints: atomic writes, ``weights_only`` loading, fallback past a corrupt file."""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer

from sperm_d2.atomic import atomic_write

logger = logging.getLogger(__name__)

_PERIODIC = re.compile(r"^model_(\d+)\.pth$")
#: Checkpoints that track the best model; they never become "the last checkpoint" to resume from.
BEST_PREFIX = "model_best"


class CheckpointError(RuntimeError):
    """No usable checkpoint to resume from (each candidate is named with its problem)."""


class SpermCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose files survive SIGKILL and whose resume survives corruption.

    * ``save`` writes to a temporary file and renames it, then updates ``last_checkpoint`` the
      same way, so a killed run leaves the previous checkpoint intact and referenced.
    * ``model_best*`` files do not move ``last_checkpoint`` (resuming continues the schedule from
      the newest periodic checkpoint, not from an older best one).
    * ``resume_or_load`` with ``resume=True`` tries ``last_checkpoint`` first and, if that file is
      missing, truncated or unreadable, reports it and falls back to the newest older one.
    * Files are read with ``torch.load(weights_only=True)``: no pickled code runs on load.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        """Atomically write ``<save_dir>/<name>.pth`` (model, checkpointables and ``kwargs``)."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        path = Path(self.save_dir) / f"{name}.pth"
        logger.info("Saving checkpoint to %s", path)
        with atomic_write(path, "wb") as f:
            torch.save(data, f)
        if not name.startswith(BEST_PREFIX):
            self.tag_last_checkpoint(path.name)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` at ``last_filename_basename`` (atomically)."""
        with atomic_write(Path(self.save_dir) / "last_checkpoint", "w") as f:
            f.write(last_filename_basename)

    def _torch_load(self, f: str) -> dict:
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True)

    def resume_candidates(self) -> list[str]:
        """Files to resume from, best first: ``last_checkpoint``, then the others newest first."""
        last = self.get_checkpoint_file() if self.has_checkpoint() else ""
        others = []
        for p in Path(self.save_dir).glob("model_*.pth"):
            m = _PERIODIC.match(p.name)
            if m:
                others.append((int(m.group(1)), str(p)))
            elif p.name == "model_final.pth":
                others.append((float("inf"), str(p)))
        ordered = [path for _, path in sorted(others, reverse=True)]
        if last:
            ordered = [last] + [p for p in ordered if os.path.abspath(p) != os.path.abspath(last)]
        return ordered

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict:
        """Resume from the newest readable checkpoint, or load ``path``'s weights only."""
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        problems = []
        for candidate in self.resume_candidates():
            try:
                checkpoint = self.load(candidate)
            except Exception as e:  # torch raises many types for a truncated/garbled file
                problem = f"{candidate}: cannot be read ({type(e).__name__}: {_first_line(e)})"
                logger.error("%s; trying the previous checkpoint", problem)
                problems.append(problem)
                continue
            if problems:
                logger.warning(
                    "resumed from %s after skipping %d unusable", candidate, len(problems)
                )
            return checkpoint
        raise CheckpointError(
            f"{self.save_dir}: no usable checkpoint to resume from: {'; '.join(problems)}"
        )

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict:
        """Like detectron2's ``load``, but a missing file is an error, not a silent random init."""
        if path and not os.path.isfile(path) and "://" not in path:
            raise FileNotFoundError(f"{path}: checkpoint file not found")
        try:
            return super().load(path, *args, **kwargs)
        finally:
            # detectron2 leaves this set when loading raises, which fails every later load.
            self._parsed_url_during_load = None


def check_weights_file(path: str) -> None:
    """Fail now, in one line, if ``path`` (``MODEL.WEIGHTS``) is not a readable checkpoint.

    Local ``.pth``/``.pt`` files are opened with ``torch.load(weights_only=True)``, memory-mapped
    where the format allows (the tensors are not read); detectron2/Caffe2 ``.pkl`` files only
    have to exist (pickles detectron2 itself opens). URLs are left to detectron2's loader.

    Raises:
        CheckpointError: missing, empty, not a file, or not a torch checkpoint.
    """
    if "://" in path:
        return
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{path}: MODEL.WEIGHTS file not found")
    if not p.is_file():
        raise CheckpointError(f"{path}: MODEL.WEIGHTS is not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{path}: MODEL.WEIGHTS file is empty")
    if p.suffix == ".pkl":
        return
    try:
        # mmap (tensors not read) needs the zip format of torch >= 1.6; older files load whole
        mmap = zipfile.is_zipfile(p)
        obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"{path}: MODEL.WEIGHTS is not a readable torch checkpoint "
            f"({type(e).__name__}: {_first_line(e)[:200]})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: MODEL.WEIGHTS holds a {type(obj).__name__}, not weights")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "no message"
