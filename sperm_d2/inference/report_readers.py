"""The run report's readers of ``instances.csv``: :func:`read_instances` makes one pass over
the file, row by row, and feeds each row to every reader the report needs (morphometrics, grades
and, with parts, the criteria's :class:`sperm_d2.inference.criteria_plots.CriteriaReader`), so
the file is read once and memory does not grow with the number of heads."""

from __future__ import annotations

import csv
from array import array
from pathlib import Path
from typing import Protocol, Sequence

from sperm_d2.inference.part_criteria import NO_SCALE
from sperm_d2.inference.report_plots import QUANTITIES


class RowReader(Protocol):
    """What :func:`read_instances` feeds: one ``instances.csv`` row (column -> cell) at a time."""

    def add(self, row: dict[str, str]) -> None: ...


def read_instances(csv_path: Path, readers: Sequence[RowReader]) -> None:
    """Feed every row of ``instances.csv`` to each of ``readers``: one pass over the file, row by
    row, however many readers the report needs."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for reader in readers:
                reader.add(row)


class MorphometricsReader:
    """Per sample key, per quantity title, the morphometric values of the rows it is fed."""

    def __init__(self, sample_of: dict[str, str], um: bool) -> None:
        self.sample_of, self.um = sample_of, um
        self.values: dict[str, dict[str, array]] = {}

    def add(self, row: dict[str, str]) -> None:
        """Take one ``instances.csv`` row."""
        key = self.sample_of.get(row["file"])
        if key is None:
            return
        per = self.values.setdefault(key, {q[0]: array("d") for q in QUANTITIES})
        for title, col_um, col_px, *_ in QUANTITIES:
            v = row.get(col_um if self.um else col_px) or ""
            if v not in ("", "None"):
                per[title].append(float(v))

    def result(self) -> dict[str, dict[str, array]]:
        """The values read so far."""
        return self.values


class GradesReader:
    """Per sample key: ``p_bad`` of its whole heads (graded runs) and the % good of each of its
    fields (image or video frame) with whole heads, from the rows it is fed (a field's rows are
    consecutive, so one field is held at a time)."""

    def __init__(self, sample_of: dict[str, str], good: str) -> None:
        self.sample_of, self.good = sample_of, good
        self.grades: dict[str, dict[str, array]] = {}
        self.field: tuple | None = None
        self.counts = [0, 0]  # good, whole heads of the field held

    def _close(self) -> None:
        if self.field is not None and self.counts[1]:
            pct = 100.0 * self.counts[0] / self.counts[1]
            self.grades[self.field[0]]["field_pct_good"].append(pct)
        self.field, self.counts = None, [0, 0]

    def add(self, row: dict[str, str]) -> None:
        """Take one ``instances.csv`` row."""
        key = self.sample_of.get(row["file"])
        if key is None or row.get("at_border") == "True":
            return
        per = self.grades.setdefault(key, {"p_bad": array("d"), "field_pct_good": array("d")})
        if (key, row["file"], row["frame"]) != self.field:
            self._close()
            self.field = (key, row["file"], row["frame"])
        self.counts[0] += row["class"] == self.good
        self.counts[1] += 1
        if row.get("p_bad") not in (None, ""):
            per["p_bad"].append(float(row["p_bad"]))

    def result(self) -> dict[str, dict[str, array]]:
        """The grades read so far, the field held included (it is closed: call once the rows
        are all fed)."""
        self._close()
        return self.grades


class NoScaleReader:
    """Counts the heads the WHO criteria judged (a ``who_grade``) and those of them judged
    without a pixel size (``head_size_no_scale`` in ``who_not_assessed``: head length and width
    unchecked), over every row it is fed."""

    def __init__(self) -> None:
        self.judged = self.unscaled = 0

    def add(self, row: dict[str, str]) -> None:
        """Take one ``instances.csv`` row."""
        if not row.get("who_grade"):
            return
        self.judged += 1
        self.unscaled += NO_SCALE in (row.get("who_not_assessed") or "").split(";")

    def result(self) -> tuple[int, int]:
        """``(heads judged without a pixel size, heads judged)``."""
        return self.unscaled, self.judged
