"""What a run folder gets from ``metrics.json``: ``results.csv`` (one row per evaluation) and the
plots (``plot_*.png``).

Both read the file detectron2's JSONWriter appends to, so they cover the whole run even across
``--resume`` (iterations repeated after a kill appear twice; the later line wins).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from detectron2.engine import HookBase

from sperm_d2.atomic import atomic_write
from sperm_d2.engine.plots import plot_training

logger = logging.getLogger(__name__)

EVAL_PREFIXES = ("bbox/", "segm/", "pixellib/", "grader/", "parts/")
VAL_PREFIXES = ("validation_loss", "val_")


def read_metrics(path: str | Path) -> dict[int, dict]:
    """iteration -> scalars from a JSONWriter ``metrics.json``; unreadable lines are counted."""
    path = Path(path)
    rows: dict[int, dict] = {}
    if not path.is_file():
        return rows
    bad = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
                it = int(row.pop("iteration"))
            except (ValueError, KeyError, TypeError):
                bad += 1  # e.g. a line cut short by a kill
                continue
            rows.setdefault(it, {}).update(row)
    if bad:
        logger.warning("%s: skipped %d unreadable line(s)", path, bad)
    return rows


def write_results_csv(metrics: dict[int, dict], path: str | Path) -> int:
    """One row per iteration that has evaluation results; returns the number of rows."""
    evals = {
        it: row
        for it, row in sorted(metrics.items())
        if any(k.startswith(EVAL_PREFIXES) for k in row)
    }
    keys = sorted(
        {k for row in evals.values() for k in row if k.startswith(EVAL_PREFIXES + VAL_PREFIXES)}
    )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["iteration"] + keys)
    for it, row in evals.items():
        writer.writerow([it] + [_fmt(row.get(k)) for k in keys])
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
    return len(evals)


def _fmt(value) -> str:
    return "" if value is None else f"{float(value):.6g}"


class _MetricsReport(HookBase):
    """Shared timing: when ``_due()`` after an iteration, and at the end of training.

    Must run after detectron2's PeriodicWriter so that ``metrics.json`` already holds the numbers.
    """

    def __init__(self, output_dir: str, period: int = 0) -> None:
        self._output_dir = Path(output_dir)
        self._period = period

    def _has_new_results(self) -> bool:
        it = self.trainer.iter
        latest = self.trainer.storage.latest()
        return any(
            k.startswith(EVAL_PREFIXES + VAL_PREFIXES) and i == it for k, (_, i) in latest.items()
        )

    def _due(self) -> bool:
        raise NotImplementedError

    def write(self) -> None:
        raise NotImplementedError

    def after_step(self) -> None:
        if self._due():
            self.write()

    def after_train(self) -> None:
        self.write()


class ResultsTable(_MetricsReport):
    """Rewrite ``results.csv`` (one row per evaluation) whenever new evaluation results arrive."""

    def _due(self) -> bool:
        return self._has_new_results()

    def write(self) -> None:
        metrics = read_metrics(self._output_dir / "metrics.json")
        n = write_results_csv(metrics, self._output_dir / "results.csv")
        logger.debug("results.csv: %d evaluation rows", n)


class TrainingPlots(_MetricsReport):
    """Redraw the PNG curves every ``period`` iterations (0: only at the end of training)."""

    def _due(self) -> bool:
        return self._period > 0 and (self.trainer.iter + 1) % self._period == 0

    def write(self) -> None:
        metrics = read_metrics(self._output_dir / "metrics.json")
        try:
            files = plot_training(metrics, self._output_dir)
        except Exception as e:  # a plotting problem must never end a training run
            logger.error("plots in %s could not be drawn: %s", self._output_dir, e)
            return
        logger.info("plots: %s", ", ".join(p.name for p in files) or "nothing to draw yet")
