"""Predictions as labelme JSON next to a copy of the image (model-assisted annotation).

An annotator opens the copy in labelme and corrects the predicted outlines instead of drawing
every head from scratch; the corrected files go back through ``tools/prepare_data.py`` like any
hand-made annotation. Without a part segmenter each head is its outline labelled with the
detector's class name (the label map the detector was trained with knows it). With one, each
sperm's parts are polygons labelled with the part names and the sperm's ``group_id``, for
``configs/labels/sperm_parsing_parts.yaml``; a head the part model found no head parts in is
its outline labelled :data:`UNPARSED_HEAD` with that ``group_id`` (beside its midpiece and tail,
if any), which that map ignores: the annotator draws its parts or deletes it. The image is a
byte copy of the source unless ``prepare_data.py`` would refuse that for how it is stored
(:func:`sperm_d2.data.image_checks.stored_format_problem`): then it is the decoded image inference
read, so the annotator, training and inference see the same pixels.
"""

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from sperm_d2.data.image_checks import stored_format_problem
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.image_io import read_image, write_image
from sperm_d2.inference.parts import head_parts
from sperm_d2.inference.types import ImagePrediction
from sperm_d2.parts.targets import HEAD_PARTS

#: label of a detected head the part model found no head parts in (whatever the detector's
#: classes are called); configs/labels/sperm_parsing_parts.yaml maps it to null (ignored)
UNPARSED_HEAD = "head"


def mask_to_polygon(mask: np.ndarray, epsilon: float = 0.7) -> list[list[float]]:
    """Outline of a mask's largest component as ``[[x, y], ...]`` (at least 3 points, or empty).

    Points are simplified with Douglas-Peucker at ``epsilon`` px: fewer vertices for the annotator
    to drag, with the outline within a pixel of the mask.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    contour = max(contours, key=cv2.contourArea)
    approx = cv2.approxPolyDP(contour, epsilon, True)
    if len(approx) < 3:
        approx = contour
    if len(approx) < 3:
        return []
    return [[float(x), float(y)] for x, y in approx.reshape(-1, 2)]


def outline_polygon(mask: np.ndarray, epsilon: float = 0.35) -> list[list[float]]:
    """Outline of a mask's largest component in COCO coordinates (a pixel spans [x, x+1]),
    traced on the mask upsampled 2x so the polygon runs a quarter pixel inside the mask's edge:
    a 2-px-wide tail keeps its area (:func:`mask_to_polygon` through the outer pixel centres
    would halve it)."""
    big = np.repeat(np.repeat(mask.astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    contour = max(contours, key=cv2.contourArea)
    approx = cv2.approxPolyDP(contour, 2 * epsilon, True)
    if len(approx) < 3:
        return []
    return [[(float(x) + 0.5) / 2, (float(y) + 0.5) / 2] for x, y in approx.reshape(-1, 2)]


def part_shapes(pred: ImagePrediction, i: int) -> list[dict]:
    """labelme shapes of head ``i``'s parts: one polygon per connected component of each part,
    labelled with the part name, ``group_id`` ``i + 1`` (as the Sperm Parsing annotation links
    the parts of one sperm, so prepare_data.py merges them back per sperm)."""
    shapes = []
    for name, mask in head_parts(pred, i).items():
        n, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            points = outline_polygon(comp == k)
            if points:
                shapes.append(
                    {
                        "label": name,
                        "points": points,
                        "group_id": i + 1,
                        "shape_type": "polygon",
                        "flags": {},
                        "description": f"predicted by sperm_d2 ({pred.labels[i]})",
                    }
                )
    return shapes


def prediction_shapes(pred: ImagePrediction) -> list[dict]:
    """labelme shapes for every head of ``pred``.

    Without a part segmenter (``pred.part_labels`` is ``None``) each head is its outline labelled
    with its class name, ``group_id`` null. With one, each head gives its parts
    (:func:`part_shapes`); a head without a head-part polygon (the head part model turned it
    down, e.g. a round cell) is its outline labelled :data:`UNPARSED_HEAD` with the same
    ``group_id`` as its midpiece and tail polygons, so the annotator sees it and can draw its
    parts or delete it (a head too small to outline is left out with them).
    """
    shapes = []
    for i, (mask, cls, score) in enumerate(zip(pred.masks, pred.classes, pred.scores)):
        parts = part_shapes(pred, i)
        if pred.part_labels is not None and any(s["label"] in HEAD_PARTS for s in parts):
            shapes += parts
            continue
        points = mask_to_polygon(mask)
        if pred.part_labels is None:
            label, group_id = pred.class_names[int(cls)], None
            description = f"predicted by sperm_d2, score {float(score):.3f}"
        else:
            label, group_id = UNPARSED_HEAD, i + 1
            description = (
                f"predicted by sperm_d2 ({pred.class_names[int(cls)]}), score {float(score):.3f}; "
                "the part model found no head parts in it: draw its parts or delete it"
            )
        if points:
            shapes.append(
                {
                    "label": label,
                    "points": points,
                    "group_id": group_id,
                    "shape_type": "polygon",
                    "flags": {},
                    "description": description,
                }
            )
            shapes += parts  # linked to the outline by its group_id (none without one)
    return shapes


def export_labelme(
    pred: ImagePrediction,
    out_image: str | os.PathLike,
    image_src: str | os.PathLike | None = None,
    image: np.ndarray | None = None,
) -> Path:
    """Write ``pred`` as labelme JSON next to ``out_image``, the image being a copy of the file
    ``image_src`` or, for video frames, the encoded ``image`` array. Returns the JSON path.

    The source image is never modified.
    """
    out_image = Path(out_image)
    out_image.parent.mkdir(parents=True, exist_ok=True)
    if image_src is not None:
        if Path(image_src).resolve() == out_image.resolve():
            pass  # the source is never modified
        elif stored_format_problem(image_src):
            # a 16-bit grey image or a TIFF Pillow turns on open, which prepare_data.py refuses:
            # written as inference decoded it (8-bit, upright, without the tag), so that training
            # reads the copy as the annotator sees it
            upright, reason = read_image(image_src)
            if upright is None:
                raise ValueError(f"{image_src}: {reason}")
            write_image(str(out_image), upright)
        else:
            shutil.copyfile(image_src, out_image)
    elif image is not None:
        write_image(str(out_image), image)
    else:
        raise ValueError("export_labelme needs image_src or image")
    json_path = out_image.with_suffix(".json")
    h, w = pred.image_size
    write_labelme_json(json_path, out_image, h, w, prediction_shapes(pred))
    return json_path
