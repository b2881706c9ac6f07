"""labelme folder (or class folders) -> validated, split COCO files + report under a data root.

``prepare_dataset`` is what ``tools/prepare_data.py`` calls. Layout written under ``output_root``::

    annotations/{train,val,test}.json   (or fold{i}_{train,val}.json with k-fold)
    annotations/report.json             the data report (see sperm_d2.data.dataset_report)
    images/...                          only images that were embedded as imageData
    labelme/...                         only with from_folders: the auto-annotated labelme files
    .prepare_data_manifest.json         what was written (sperm_d2.data.manifest)

Nothing is written until every file has been read and every split is known to be non-empty;
the input may not overlap the folders written; only the tool's own earlier outputs are replaced.

COCO ``file_name`` is the image path relative to ``output_root``; images are never copied.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from sperm_d2.atomic import interrupt_after
from sperm_d2.data.coco import image_class
from sperm_d2.data.convert import ConvertContext, FileResult, convert_labelme_file
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.manifest import check_owned, read_manifest
from sperm_d2.data.prepare_io import (
    LABELME_DIR,
    check_arguments,
    files_under,
    split_names,
    write_outputs,
)
from sperm_d2.data.problems import ERROR, WARNING, InputError, Problem, walk_problem
from sperm_d2.data.split import SPLIT_NAMES, kfold_split, stratified_split
from sperm_d2.file_walk import walk_files
from sperm_d2.image_io import is_debris

logger = logging.getLogger(__name__)

__all__ = ["LABELME_DIR", "exit_code", "find_labelme_files", "prepare_dataset"]


def find_labelme_files(
    root: str | os.PathLike,
    exclude: Iterable[Path] = (),
    problems: list[Problem] | None = None,
    real_roots: list[Path] | None = None,
) -> list[Path]:
    """All ``*.json`` files under ``root`` (sorted), skipping folder debris
    (:func:`sperm_d2.image_io.is_debris`: dot-names such as the tools' manifests and macOS
    ``._*`` files, ``@eaDir/``, ``__MACOSX/``...) and ``exclude``; linked folders are followed
    (:func:`sperm_d2.file_walk.walk_files`). A folder it could not read, or a link loop it did
    not follow, is appended to ``problems`` (without a list: logged as a warning); the real
    paths of ``root`` and of the linked folders entered, to ``real_roots`` if given (the images
    there are part of the input)."""
    root = Path(root)
    files, unwalked = walk_files(root, skip=is_debris, exclude=exclude, real_roots=real_roots)
    for w in unwalked:
        problem = walk_problem(
            w, w.path.relative_to(root).as_posix() if w.path != root else str(root)
        )
        if problems is None:
            logger.warning("%s", problem)
        else:
            problems.append(problem)
    out = [p for p in files if p.name.lower().endswith(".json")]
    return sorted(out, key=lambda p: Path(os.path.relpath(p, root)).as_posix())


def convert_all(paths: Sequence[Path], ctx: ConvertContext, workers: int = 1) -> list[FileResult]:
    """Convert files (in order), in ``workers`` processes when > 1."""
    fn = functools.partial(convert_labelme_file, ctx=ctx)
    bar = dict(total=len(paths), desc="convert", unit="file", disable=len(paths) < 200)
    if workers <= 1 or len(paths) < 2:
        return [fn(p) for p in tqdm(paths, **bar)]
    chunk = max(1, min(64, len(paths) // (workers * 8)))
    # no more processes than files: each worker is forked up front, busy or not
    with ProcessPoolExecutor(max_workers=min(workers, len(paths))) as pool:
        return list(tqdm(pool.map(fn, paths, chunksize=chunk), **bar))


def drop_duplicates(results: Sequence[FileResult]) -> tuple[list[FileResult], list[Problem]]:
    """Keep the first file per image (same path or identical bytes); later ones are errors."""
    seen: dict[str, FileResult] = {}
    kept, problems = [], []
    for r in results:
        first = seen.get(r.image_key) or seen.get(r.digest)
        if first is not None:
            a, b = image_class(first), image_class(r)
            conflict = f" (labelled {a!r} there, {b!r} here)" if a != b else ""
            msg = f"same image as {first.json_rel}{conflict}, skipped"
            problems.append(Problem(ERROR, "duplicate_image", r.json_rel, msg))
            continue
        seen[r.image_key] = seen[r.digest] = r
        kept.append(r)
    return kept, problems


def make_splits(
    kept: Sequence[FileResult], ratios: Sequence[float], seed: int, kfold: int = 0
) -> dict[str, list[FileResult]]:
    """Split name -> results. With ``kfold`` a test part (3rd ratio) is held out first.

    The unit of splitting is ``FileResult.group``: augmented copies (``sperm_d2.data.balance``)
    follow their source image, so no augmented twin of a val/test image lands in train.
    """
    members: dict[str, list[FileResult]] = {}
    for r in kept:
        members.setdefault(r.group or r.json_rel, []).append(r)
    keys = sorted(members)
    strata = [image_class(members[k][0]) for k in keys]

    def expand(idx: Iterable[int]) -> list[FileResult]:
        return sorted((r for i in idx for r in members[keys[i]]), key=lambda r: r.json_rel)

    if not kfold:
        parts = stratified_split(keys, strata, ratios, seed)
        return {name: expand(p) for name, p in zip(SPLIT_NAMES[len(ratios)], parts)}
    out = {}
    pool = list(range(len(keys)))
    if len(ratios) == 3:
        rest, test = stratified_split(keys, strata, [ratios[0] + ratios[1], ratios[2]], seed)
        out["test"] = expand(test)
        pool = rest
    folds = kfold_split([keys[i] for i in pool], [strata[i] for i in pool], kfold, seed)
    for f, (train, val) in enumerate(folds):
        out[f"fold{f}_train"] = expand(pool[i] for i in train)
        out[f"fold{f}_val"] = expand(pool[i] for i in val)
    return out


def prepare_dataset(
    input_dir: str | os.PathLike,
    output_root: str | os.PathLike,
    label_map: LabelMap,
    *,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    kfold: int = 0,
    workers: int = 1,
    from_folders: bool = False,
    image_roots: Sequence[str | os.PathLike] = (),
) -> dict:
    """Convert, validate, split and write a dataset; returns the report (also written to JSON).

    Images must lie under ``input_dir`` (or, with ``from_folders``, the class folders), a folder
    linked into it, or one of ``image_roots``; a labelme file naming an image elsewhere is an
    error (path escape). Bad files are skipped and reported; nothing is written unless every
    split gets images. Only files an earlier run wrote (and nobody edited since) are replaced or
    removed (:mod:`.manifest`).

    Raises:
        InputError: bad arguments, overlapping input/output, no usable file, an empty split, or
            a file in the way that the tool did not write. Nothing was written then.
    """
    input_dir, output_root = Path(input_dir), Path(output_root)
    image_roots = [Path(r) for r in image_roots]
    check_arguments(
        input_dir,
        output_root,
        ratios=ratios,
        seed=seed,
        kfold=kfold,
        workers=workers,
        from_folders=from_folders,
        image_roots=image_roots,
    )
    owned = read_manifest(output_root)
    names = split_names(len(ratios), kfold)
    check_owned(output_root, [f"annotations/{n}.json" for n in names + ["report"]], owned)
    if from_folders:
        check_owned(output_root, files_under(output_root, LABELME_DIR), owned)
    created_root = not output_root.exists()
    staging = None
    try:
        pre_problems: list[Problem] = []
        linked: list[Path] = []  # the real folders the user linked into the input: part of it
        scan_root, allowed = input_dir, (input_dir.resolve(),)
        if from_folders:
            from sperm_d2.data.autoannotate import annotate_class_folders

            output_root.mkdir(parents=True, exist_ok=True)
            # Built beside labelme/ (same depth: relative imagePaths stay valid) and swapped in
            # at the end, so a failed run leaves the previous labelme/ as it was.
            staging = Path(tempfile.mkdtemp(prefix=f".{LABELME_DIR}.partial-", dir=output_root))
            scan_root = staging
            pre_problems = annotate_class_folders(
                input_dir,
                staging,
                label_map,
                workers=workers,
                image_roots=image_roots,
                real_roots=linked,
            )
            allowed = (input_dir.resolve(), output_root.resolve())
        exclude = [output_root] if not from_folders else []
        paths = find_labelme_files(
            scan_root, exclude=exclude, problems=pre_problems, real_roots=linked
        )
        if not paths:
            what = "no image in class folders" if from_folders else "no labelme *.json file"
            raise InputError(f"--input {input_dir}: {what} found", pre_problems)
        allowed += tuple(linked) + tuple(r.resolve() for r in image_roots)
        ctx = ConvertContext(scan_root, output_root, label_map, allowed)
        results = convert_all(paths, ctx, workers)
        problems = pre_problems + [p for r in results for p in r.problems]
        kept, dup_problems = drop_duplicates([r for r in results if r.ok])
        problems += dup_problems
        if not kept:
            raise InputError(f"--input {input_dir}: none of {len(paths)} file(s) usable", problems)
        try:
            splits = make_splits(kept, ratios, seed, kfold)
        except ValueError as e:
            raise InputError(str(e), problems) from None
        empty = [n for n, rs in splits.items() if not rs]
        if empty:
            raise InputError(
                f"--split {','.join(f'{r:g}' for r in ratios)}"
                f"{f' --kfold {kfold}' if kfold else ''}: {len(kept)} usable image(s) leave "
                f"{', '.join(empty)} empty; add images or change the ratios",
                problems,
            )
        # Ctrl-C waits until every output is written: new splits beside old ones would be a
        # dataset nobody made
        with interrupt_after():
            report = write_outputs(
                output_root,
                owned=owned,
                kept=kept,
                splits=splits,
                problems=problems,
                label_map=label_map,
                files_found=len(paths),
                staging=staging,
                settings=dict(
                    input=str(input_dir),
                    output=str(output_root),
                    label_map=label_map.source,
                    classes=list(label_map.classes),
                    split=list(ratios),
                    seed=seed,
                    kfold=kfold,
                    from_folders=from_folders,
                    image_roots=[str(r) for r in image_roots],
                ),
            )
            staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created_root and output_root.is_dir() and not any(output_root.iterdir()):
            output_root.rmdir()
    logger.info(
        "%d files: %d converted, %d problems (see %s)",
        len(paths),
        len(kept),
        len(problems),
        output_root / "annotations" / "report.json",
    )
    return report


def exit_code(report: dict, strict: bool = False) -> int:
    """0 when clean; 1 when files were skipped (errors) or, with ``strict``, on any warning."""
    counts = report["problems"]["counts"]
    if counts.get(ERROR):
        return 1
    return 1 if strict and counts.get(WARNING) else 0
