"""``evaluate.py --folders``: image-level grading of class folders of single-cell crops.

Layout: ``ROOT/<folder>/<image>``, or a COCO split that ``prepare_data.py --from-folders`` wrote
from such folders (``DATA_ROOT/annotations/<split>.json``: its images, read where they lie); the
label map turns each image's folder name into a class (a folder mapped to ``null``, e.g.
``non_sperm``, is left out and counted). The score threshold and the
class-prior bias (``sperm_d2.evaluation.classification``) are chosen on the val folders (when
given; with a head grader the bias moves the grader's ``p_bad`` boundary) and the metrics are
reported on the test folders, with the plain top-head rule (bias 0) alongside for comparison.
"""

import logging
import os
from pathlib import Path
from typing import Collection

from tqdm import tqdm

from sperm_d2.atomic import write_json_atomic
from sperm_d2.data.coco import split_image_paths
from sperm_d2.errors import InputError, InputNotFoundError
from sperm_d2.evaluation.classification import (
    NO_HEAD,
    GradedImage,
    choose_bias,
    choose_threshold,
    grade_metrics,
    per_group_good,
)
from sperm_d2.evaluation.figures import contact_sheet, plot_confusion_matrix
from sperm_d2.evaluation.skips import merge_skips, nothing_evaluated
from sperm_d2.file_walk import walk_class_folders
from sperm_d2.image_io import is_debris, is_image_path, read_image
from sperm_d2.inference.overlay import class_colors_bgr, draw_prediction

logger = logging.getLogger(__name__)

MAX_SHEET = 36  # misclassified examples kept for the contact sheet


def list_class_folders(root: str | os.PathLike, label_map) -> tuple[list[tuple[str, str]], dict]:
    """``([(image path, class)], {"ignored_folders": {...}, ...})`` for ``root/<folder>/*``, or
    for the images of the COCO split ``root`` (a ``.json`` file), classed by their folder.

    The class folders are walked as one tree (:func:`sperm_d2.file_walk.walk_class_folders`): a
    crop reached from two of them is listed once, under the one it lies in. A folder inside a
    class folder that was not walked (unreadable, a link loop, a link to a folder listed under
    another class folder) is listed, ``{"path", "reason", "folder": True}``, under the info's
    ``"skipped"`` key, present only then."""
    root = Path(root)
    unwalked: dict[str, list[dict]] = {}
    if root.suffix.lower() == ".json" and root.is_file():
        by_folder: dict[str, list[Path]] = {}
        for path in split_image_paths(root):
            by_folder.setdefault(path.parent.name, []).append(path)
    elif root.is_dir():
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_debris(p.name))
        walk = walk_class_folders(root, names, skip=is_debris)
        by_folder = {n: [q for q in walk.files[n] if is_image_path(q)] for n in names}
        for name, problems in walk.problems.items():
            unwalked[name] = [_folder_skip(w.path, w.reason) for w in problems]
    else:
        raise InputNotFoundError(f"{root}: class-folder root (or COCO split .json) not found")
    items, ignored, skipped = [], {}, []
    for name, files in sorted(by_folder.items()):
        cls = label_map.class_of(name)  # an unknown folder name is an error, never a guess
        if cls is None:  # left out whole: what could not be walked in it is not lost
            ignored[name] = len(files)
            continue
        items += [(str(q), cls) for q in files]
        skipped += unwalked.get(name, [])
    if not items:
        why = f" (first: {skipped[0]['path']}: {skipped[0]['reason']})" if skipped else ""
        raise InputError(f"{root}: no images in folders the label map assigns to a class{why}")
    return items, {"ignored_folders": ignored, **({"skipped": skipped} if skipped else {})}


def _folder_skip(path: Path, reason: str) -> dict:
    """A skipped folder's entry among the skipped images: ``"folder"`` tells them apart."""
    return {"path": str(path), "reason": reason, "folder": True}


def class_scores(pred) -> tuple[tuple[str, float], ...]:
    """What the class-prior bias weighs, per class: with a grader, the top head's class
    probabilities (``p_bad`` and, with two classes, ``1 - p_bad`` for the other); without one,
    the best detector score of each class detected in the image."""
    if not len(pred):
        return ()
    if pred.p_bad is not None:
        p_bad = float(pred.p_bad[0])
        others = [c for c in pred.class_names if c != "bad"]
        return (("bad", p_bad),) + (((others[0], 1.0 - p_bad),) if len(others) == 1 else ())
    best: dict[str, float] = {}
    for label, score in zip(pred.labels, pred.scores.tolist()):  # sorted by score
        best.setdefault(label, float(score))
    return tuple(best.items())


def grade_folders(
    predictor, items: list[tuple[str, str]], desc: str, keep=None, warned: Collection[str] = ()
):
    """Predict every crop; return ``[GradedImage]``, the skipped files (``{"path", "reason"}``,
    one warning each) and the overlays. ``keep(graded)`` says which images to keep drawn
    overlays for (returned as a dict path -> BGR overlay). The files in ``warned`` (skipped by
    an earlier pass over the same folders) are skipped and listed without a second warning."""
    graded, skipped, overlays = [], [], {}
    colors = class_colors_bgr(predictor.class_colors)
    truth = dict(items)
    for path, pred, error in tqdm(
        predictor.predict_paths([p for p, _ in items]), total=len(items), desc=desc, unit="img"
    ):
        if pred is None:
            (logger.debug if path in warned else logger.warning)("skipped %s: %s", path, error)
            skipped.append({"path": path, "reason": error})
            continue
        top = (pred.labels[0], float(pred.scores[0])) if len(pred) else (None, 0.0)
        g = GradedImage(path, truth[path], *top, class_scores=class_scores(pred))
        graded.append(g)
        if keep is not None and keep(g) and len(overlays) < MAX_SHEET:
            image, _ = read_image(path)  # read once already by the predictor
            if image is not None:
                overlays[path] = draw_prediction(image, pred.top(1), colors)
    return graded, skipped, overlays


def _warn_unwalked(skipped: list[dict], warned: Collection[str] = ()) -> list[dict]:
    """The folders :func:`list_class_folders` could not walk, one warning each (unless in
    ``warned``, as in :func:`grade_folders`)."""
    for s in skipped:
        (logger.debug if s["path"] in warned else logger.warning)(
            "skipped folder %s: %s", s["path"], s["reason"]
        )
    return skipped


def evaluate_folders(predictor, test_root, label_map, output_dir, *, val_root=None) -> dict:
    """Threshold and bias on val (if given, else the predictor's threshold and no bias),
    metrics + figures on test. The files skipped in either are listed once each in ``skipped``
    with the ``parts`` (val, test) that lost them (:func:`sperm_d2.evaluation.skips.merge_skips`).

    Raises:
        InputError: every image of the val folders was skipped.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = tuple(predictor.class_names)
    threshold, bias, val_metrics = float(predictor.cfg.SPERM.CONFIDENCE_THRESHOLD), 0.0, None
    val_skipped: list[dict] = []
    if val_root:
        val_items, val_info = list_class_folders(val_root, label_map)
        val_graded, val_skipped, _ = grade_folders(predictor, val_items, "val folders")
        val_skipped[:0] = _warn_unwalked(val_info.pop("skipped", []))
        if not val_graded:
            raise InputError(nothing_evaluated(f"--val-folders {val_root}", val_skipped, val_root))
        threshold = choose_threshold(val_graded, classes)
        bias = choose_bias(val_graded, classes, threshold)
        val_metrics = grade_metrics(val_graded, classes, threshold, bias=bias)[0]

    def grade(g: GradedImage) -> str | None:
        return g.predicted(threshold, bias)

    items, info = list_class_folders(test_root, label_map)
    # the val folders may be the test folders: their bad files are warned about once
    warned = {s["path"] for s in val_skipped}
    graded, test_skipped, overlays = grade_folders(
        predictor, items, "test folders", keep=lambda g: grade(g) != g.true, warned=warned
    )
    test_skipped[:0] = _warn_unwalked(info.pop("skipped", []), warned)
    skipped = merge_skips(val_skipped, test_skipped)
    metrics, cm = grade_metrics(graded, classes, threshold, bias=bias)
    cols = [*classes, NO_HEAD]
    title = f"{Path(test_root).name}: accuracy {metrics['accuracy']:.3f}"
    plot_confusion_matrix(cm, list(classes), cols, out / "confusion_matrix.png", title=title)
    wrong = [g for g in graded if grade(g) != g.true and g.path in overlays]
    tiles = [
        (overlays[g.path], f"{g.true}->{grade(g) or NO_HEAD} {g.top_score:.2f}") for g in wrong
    ]
    has_sheet = contact_sheet(tiles, out / "misclassified.png")
    result = {
        "test_root": str(test_root),
        "grader": predictor.grader.source if predictor.grader is not None else None,
        "val_root": str(val_root) if val_root else None,
        "threshold": threshold,
        "bias_bad": bias,
        "threshold_chosen_on": "val folders" if val_root else "config SPERM.CONFIDENCE_THRESHOLD",
        "test": metrics,
        # the plain top-head rule at the same threshold: what the bias changed
        "test_top_head": grade_metrics(graded, classes, threshold)[0],
        "val": val_metrics,
        "confusion_matrix": {
            "rows_true": list(classes),
            "cols_predicted": cols,
            "counts": cm.tolist(),
        },
        "per_sample": per_group_good(graded, lambda p: Path(p).parent.name, threshold, bias),
        "skipped_count": len(skipped),
        "skipped": skipped,
        "misclassified": [
            {
                "path": g.path,
                "true": g.true,
                "predicted": grade(g),
                "score": g.top_score,
                "class_scores": dict(g.class_scores),
            }
            for g in graded
            if grade(g) != g.true
        ],
        "misclassified_sheet": "misclassified.png" if has_sheet else None,
        **info,
    }
    write_json_atomic(out / "metrics.json", result)
    return result
