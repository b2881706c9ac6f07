"""The images an ``evaluate.py`` run skipped (unreadable, or not the size of their annotations),
from its val pass (that chooses the threshold) and its test pass (that is reported): one entry
per file, naming the passes that lost it, and the lines of the printed summary."""

from __future__ import annotations

from typing import Iterable


def merge_skips(val: Iterable[dict], test: Iterable[dict]) -> list[dict]:
    """One entry per skipped file, val's first: the file's first entry (``path``, ``reason``,
    for a split its ``dataset``) with ``parts``, the passes that skipped it (``"val"``: the
    threshold was chosen without it; ``"test"``: the metrics were reported without it). A file
    of both (``--val-folders`` the same as ``--folders``, or ``--val-dataset`` as
    ``--dataset``) is listed once, with both parts."""
    merged: dict[str, dict] = {}
    for part, entries in (("val", val), ("test", test)):
        for entry in entries:
            parts = merged.setdefault(entry["path"], {**entry, "parts": []})["parts"]
            if part not in parts:
                parts.append(part)
    return list(merged.values())


def skipped_lines(skipped: list[dict], lost: str, max_listed: int) -> list[str]:
    """The printed summary's lines on the ``skipped`` files (:func:`merge_skips`): a header
    saying what each part ``lost`` by a skip, then the first ``max_listed`` files with their
    reason and where they were skipped; nothing when none was."""
    if not skipped:
        return []
    images, also = _counted(skipped)
    lines = [f"skipped {images} image(s){also}, listed in metrics.json ({lost}):"]
    for s in skipped[:max_listed]:
        where = " and ".join(s.get("parts", ()))
        where += f" split {s['dataset']}" if s.get("dataset") else " folders"
        lines.append(f"  {s['path']}: {s['reason']} ({where})")
    if len(skipped) > max_listed:
        lines.append(f"  ... and {len(skipped) - max_listed} more")
    return lines


def nothing_evaluated(source: str, skipped: list[dict], root: object) -> str:
    """The one line for class folders of which nothing was evaluated (``source``: the flag and
    ``root``): the skipped images and the folders not walked counted apart, and the first
    image skipped (else the first folder; ``root`` when nothing was listed)."""
    images, also = _counted(skipped)
    fallback = skipped[0] if skipped else {"path": root}
    first = next((s for s in skipped if not s.get("folder")), fallback)
    return (
        f"{source}: nothing evaluated, all {images} images skipped{also} "
        f"(first: {first['path']}: {first.get('reason', '')})"
    )


def _counted(skipped: list[dict]) -> tuple[int, str]:
    """The images among ``skipped`` and the words for its folders not walked (their entries
    carry ``"folder"``: the images in them were never seen), "" when there are none."""
    folders = sum(1 for s in skipped if s.get("folder"))
    return len(skipped) - folders, f" and {folders} folder(s) not walked" if folders else ""
