"""Crash-safe checkpoints: atomic writes, loading as data, fallback past a corrupt file."""

from __future__ import annotations

import logging
import os
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer

from sperm_d2.atomic import atomic_write, remove_stale_temps
from sperm_d2.weights_io import CheckpointError, SafeCheckpointLoading, first_line

__all__ = [
    "BEST_PREFIX",
    "CheckpointError",
    "SpermCheckpointer",
    "can_resume",
    "own_last_checkpoint",
    "saved_checkpoints",
]

logger = logging.getLogger(__name__)

_PERIODIC = re.compile(r"^model_(\d+)\.pth$")
#: Checkpoints that track the best model; they never become "the last checkpoint" to resume from.
BEST_PREFIX = "model_best"


def saved_checkpoints(folder: str | os.PathLike) -> list[str]:
    """The periodic and final checkpoints in a run folder (``model_<iter>.pth``,
    ``model_final.pth``), newest first; ``model_best*`` files are not resumed from."""
    found = []
    for p in Path(folder).glob("model_*.pth"):
        m = _PERIODIC.match(p.name)
        if m:
            found.append((int(m.group(1)), str(p)))
        elif p.name == "model_final.pth":
            found.append((float("inf"), str(p)))
    return [path for _, path in sorted(found, reverse=True)]


def named_last_checkpoint(folder: str | os.PathLike) -> str:
    """The file a run folder's ``last_checkpoint`` names (joined to the folder, as detectron2
    reads it), "" without one."""
    try:
        name = (Path(folder) / "last_checkpoint").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return os.path.join(folder, name) if name else ""


def own_last_checkpoint(folder: str | os.PathLike) -> str:
    """:func:`named_last_checkpoint` when it lies inside ``folder``, else "": a hand-edited or
    copied ``last_checkpoint`` naming another run's weights is never resumed from."""
    last = named_last_checkpoint(folder)
    inside = last and os.path.dirname(os.path.abspath(last)) == os.path.abspath(folder)
    return last if inside else ""


def can_resume(folder: str | os.PathLike) -> bool:
    """Whether ``--resume`` continues a run in ``folder``: the checkpoint ``last_checkpoint``
    names (inside the folder), or (that small file lost, say the folder was copied without it)
    a periodic or final one."""
    return bool(own_last_checkpoint(folder)) or bool(saved_checkpoints(folder))


class SpermCheckpointer(SafeCheckpointLoading, DetectionCheckpointer):
    """``DetectionCheckpointer`` whose files survive SIGKILL and whose resume survives corruption.

    * ``save`` writes to a temporary file and renames it, then updates ``last_checkpoint`` the
      same way, so a killed run leaves the previous checkpoint intact and referenced; the
      temporary file a killed run left is removed at the next save.
    * ``model_best*`` files do not move ``last_checkpoint`` (resuming continues the schedule from
      the newest periodic checkpoint, not from an older best one).
    * ``resume_or_load`` with ``resume=True`` tries ``last_checkpoint`` first and, if that file is
      missing, truncated or unreadable, reports it and falls back to the newest older one.
    * Files load as data (:mod:`sperm_d2.weights_io`): torch files with
      ``torch.load(weights_only=True)``, model-zoo ``.pkl`` files with an unpickler that builds
      numpy arrays only; a file that would run code is refused (and skipped when resuming).
    * A model with ``adapt_pretrained_state(state) -> state`` renames the weights it is given
      (e.g. an ImageNet torchvision ResNet's, for the grader's trunk) before they load.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        """Atomically write ``<save_dir>/<name>.pth`` (model, checkpointables and ``kwargs``)."""
        if not self.save_dir or not self.save_to_disk:
            return
        ema = self.checkpointables.get("ema")
        averaged = ema is not None and (name == "model_final" or name.startswith(BEST_PREFIX))
        path = Path(self.save_dir) / f"{name}.pth"
        # a checkpoint half-written by a killed run (SIGKILL) would otherwise stay for good
        remove_stale_temps(self.save_dir, "model_*.pth")
        logger.info("Saving checkpoint to %s%s", path, " (averaged weights)" * averaged)
        # state_dict() holds the live tensors: they are written before the block gives them back
        with ema.applied() if averaged else nullcontext():
            data = {"model": self.model.state_dict()}
            for key, obj in self.checkpointables.items():
                data[key] = obj.state_dict()
            data.update(kwargs)
            with atomic_write(path, "wb") as f:
                torch.save(data, f)
        if not name.startswith(BEST_PREFIX):
            self.tag_last_checkpoint(path.name)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` at ``last_filename_basename`` (atomically)."""
        with atomic_write(Path(self.save_dir) / "last_checkpoint", "w") as f:
            f.write(last_filename_basename)

    def has_checkpoint(self) -> bool:
        """:func:`can_resume` of the run folder (without it ``--resume`` after a lost
        ``last_checkpoint`` started over at iteration 0 and overwrote the checkpoints)."""
        self._own_last()  # says once when last_checkpoint names a file outside the folder
        return can_resume(self.save_dir)

    def _own_last(self) -> str:
        """:func:`own_last_checkpoint` of the run folder; logs (once) a ``last_checkpoint``
        naming a file outside it, which is ignored."""
        own, last = own_last_checkpoint(self.save_dir), named_last_checkpoint(self.save_dir)
        if last and not own and getattr(self, "_said_outside", None) != last:
            logger.error("last_checkpoint names %s, outside %s: ignored", last, self.save_dir)
            self._said_outside = last
        return own

    def resume_candidates(self) -> list[str]:
        """Files to resume from, best first: ``last_checkpoint``, then the others newest first."""
        last = self._own_last()
        ordered = saved_checkpoints(self.save_dir)
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
                problem = f"{candidate}: cannot be read ({type(e).__name__}: {first_line(e)})"
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

    def _load_model(self, checkpoint: dict) -> Any:
        # a model that starts from another layout's weights (the grader's torchvision trunk from
        # an ImageNet state dict) renames them itself; everything else loads as detectron2 does
        adapt = getattr(self.model, "adapt_pretrained_state", None)
        if adapt is not None:
            checkpoint["model"] = adapt(checkpoint["model"])
        return super()._load_model(checkpoint)

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict:
        """Like detectron2's ``load``, but a missing file is an error, not a silent random init."""
        if path and not os.path.isfile(path) and "://" not in path:
            raise CheckpointError(f"{path}: checkpoint file not found")
        try:
            return super().load(path, *args, **kwargs)
        finally:
            # detectron2 leaves this set when loading raises, which fails every later load.
            self._parsed_url_during_load = None
