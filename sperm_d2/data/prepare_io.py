"""The edges of ``prepare_dataset``: arguments checked before any file is read, and the
outputs written (each file atomically) once the whole dataset is known to be usable.

Layout written under the data root: ``annotations/<split>.json`` and ``report.json``,
``images/`` (embedded ``imageData`` only), ``labelme/`` (``--from-folders`` only) and the
manifest of :mod:`sperm_d2.data.manifest`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from sperm_d2.atomic import write_bytes_atomic, write_json_atomic
from sperm_d2.data.coco import assign_ids, coco_bytes, coco_dict
from sperm_d2.data.convert import EMBEDDED_DIR, FileResult
from sperm_d2.data.dataset_report import build_report
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.manifest import (
    check_owned,
    nearest_existing,
    overlaps,
    remove_stale,
    sha256_file,
    write_manifest,
)
from sperm_d2.data.problems import InputError, Problem, check_seed
from sperm_d2.data.split import SPLIT_NAMES

logger = logging.getLogger(__name__)

LABELME_DIR = "labelme"
WRITE_THREADS = 8  # embedded images written at once (waiting on fsync, see write_files_atomic)
#: the most folds of --kfold (each fold is a training run; more is a typo, not a plan)
MAX_KFOLD = 1000
#: worker processes per CPU that --workers may ask for (the work is CPU-bound)
WORKERS_PER_CPU = 4


def max_workers() -> int:
    """The most worker processes ``--workers`` may start on this machine."""
    return WORKERS_PER_CPU * (os.cpu_count() or 1)


def split_names(num_ratios: int, kfold: int) -> list[str]:
    """The split files a run writes (without ``.json``), known before any file is read."""
    if not kfold:
        return list(SPLIT_NAMES[num_ratios])
    folds = [f"fold{f}_{s}" for f in range(kfold) for s in ("train", "val")]
    return (["test"] if num_ratios == 3 else []) + folds


def check_arguments(
    input_dir: Path,
    output_root: Path,
    *,
    ratios: Sequence[float],
    seed: int,
    kfold: int,
    workers: int,
    from_folders: bool,
    image_roots: Sequence[Path],
) -> None:
    """Everything that can be checked before reading a file; raises :class:`InputError`.

    Input and output may not overlap: the input may not be (or lie inside, or contain) a folder
    the run writes (``annotations/``, ``images/``, with ``from_folders`` ``labelme/``).
    """
    if not input_dir.exists():
        raise InputError(f"--input {input_dir}: folder not found")
    if not input_dir.is_dir():
        raise InputError(f"--input {input_dir}: not a folder")
    if output_root.exists() and not output_root.is_dir():
        raise InputError(f"--output {output_root}: exists and is not a folder")
    anchor = nearest_existing(output_root)
    if not anchor.is_dir() or not os.access(anchor, os.W_OK | os.X_OK):
        raise InputError(f"--output {output_root}: cannot write in {anchor}")
    targets = ["annotations", EMBEDDED_DIR] + ([LABELME_DIR] if from_folders else [])
    if input_dir.resolve() == output_root.resolve():
        raise InputError(f"--input and --output are the same folder {input_dir}")
    for t in targets:
        if overlaps(input_dir, output_root / t):
            raise InputError(
                f"--input {input_dir} overlaps {output_root / t}, which this run writes; "
                "keep the inputs outside --output"
            )
    for r in image_roots:
        if not Path(r).is_dir():
            raise InputError(f"--image-root {r}: folder not found")
    if not all(math.isfinite(r) and r > 0 for r in ratios) or not 1 <= len(ratios) <= 3:
        raise InputError(f"--split {list(ratios)}: expected 1-3 positive finite ratios")
    check_seed(seed)
    if kfold < 0 or kfold == 1:
        raise InputError(f"--kfold {kfold}: expected 0 (no folds) or at least 2")
    if kfold > MAX_KFOLD:  # its split names are listed before any file is read
        raise InputError(f"--kfold {kfold}: expected at most {MAX_KFOLD} folds")
    if workers < 1:
        raise InputError(f"--workers {workers}: expected at least 1")
    if workers > max_workers():  # each is a process: thousands would exhaust the memory
        raise InputError(
            f"--workers {workers}: expected at most {max_workers()} "
            f"({WORKERS_PER_CPU} per CPU of this machine)"
        )


def files_under(root: Path, sub: str) -> list[str]:
    """Relative paths of the files under ``root/sub`` (or ``sub`` itself if it is a file)."""
    folder = root / sub
    if folder.exists() and not folder.is_dir():
        return [sub]
    return [p.relative_to(root).as_posix() for p in folder.rglob("*") if not p.is_dir()]


def write_outputs(
    root: Path,
    *,
    owned: dict[str, str],
    kept: Sequence[FileResult],
    splits: dict[str, list[FileResult]],
    problems: Sequence[Problem],
    label_map: LabelMap,
    files_found: int,
    staging: Path | None,
    settings: dict,
) -> dict:
    """Write everything (each file atomically), then drop the earlier run's leftovers."""
    embedded, digests = {}, {}  # digest: convert_labelme_file's sha256 of the image bytes
    resolved_root = root.resolve()
    for r in kept:
        if r.embedded is not None:
            rel = Path(os.path.relpath(r.image_key, resolved_root)).as_posix()
            embedded[rel], digests[rel] = r.embedded, r.digest
    changed = [rel for rel, data in embedded.items() if differs(root / rel, data)]
    check_owned(root, changed, owned)
    entries = dict(zip((r.json_rel for r in kept), assign_ids(kept)))
    docs = {
        f"annotations/{name}.json": coco_bytes(
            coco_dict([entries[r.json_rel] for r in rs], label_map, name)
        )
        for name, rs in splits.items()
    }
    report = build_report(
        kept,
        splits=splits,
        problems=problems,
        classes=label_map.classes,
        files_found=files_found,
        settings=settings,
    )
    write_files_atomic([(root / rel, embedded[rel]) for rel in changed])
    written: dict[str, str] = dict(digests)
    for rel, data in docs.items():
        write_bytes_atomic(root / rel, data)
        written[rel] = hashlib.sha256(data).hexdigest()
    write_json_atomic(root / "annotations" / "report.json", report)
    written["annotations/report.json"] = sha256_file(root / "annotations" / "report.json")
    if staging is not None:
        labelme = {
            f"{LABELME_DIR}/{p.relative_to(staging).as_posix()}": sha256_file(p)
            for p in staging.rglob("*")
            if p.is_file()
        }
        old = root / LABELME_DIR
        if old.exists():  # checked: only our own unchanged files
            shutil.rmtree(old)
        os.replace(staging, old)
        written.update(labelme)
    # An earlier run's file is stale unless this run reads it: the labelme/ of --from-folders
    # (reviewed, then prepared again as --input) or anything under --input/--image-root.
    readers = [Path(settings["input"]).resolve()] + [
        Path(r).resolve() for r in settings.get("image_roots", [])
    ]
    stale, kept_owned = set(), {}
    for rel in set(owned) - set(written):
        path = (root / rel).resolve()
        read = any(path == r or r in path.parents for r in readers)
        if read or (staging is None and rel.startswith(f"{LABELME_DIR}/")):
            kept_owned[rel] = owned[rel]
        else:
            stale.add(rel)
    for rel in remove_stale(root, stale, owned):
        logger.info("removed %s, written by an earlier run and not by this one", root / rel)
    written.update(kept_owned)  # still ours: a later --from-folders run may replace them
    foreign = sorted(
        p.name
        for p in (root / "annotations").glob("*.json")
        if f"annotations/{p.name}" not in written
    )
    if foreign:
        logger.warning(
            "%s: %s not written by this run, left in place (register_sperm_datasets registers "
            "them too)",
            root / "annotations",
            foreign,
        )
    write_manifest(root, written)
    return report


def write_files_atomic(files: Sequence[tuple[Path, bytes]], threads: int = WRITE_THREADS) -> None:
    """Write ``(path, data)`` pairs, each atomically (:func:`write_bytes_atomic`: temporary file,
    fsync, rename), in a few threads: the fsyncs, which wait on the disk, overlap (the CPU work
    is small). A failure is raised once the other writes have finished."""
    if len(files) < 2 or threads < 2:
        for path, data in files:
            write_bytes_atomic(path, data)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(files))) as pool:
        for _ in pool.map(lambda f: write_bytes_atomic(*f), files):
            pass


def differs(path: Path, data: bytes) -> bool:
    """Whether ``path`` is not already a file holding exactly ``data``."""
    try:
        return not (path.is_file() and path.read_bytes() == data)
    except OSError:
        return True
