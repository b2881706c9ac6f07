"""Evaluation figures: the confusion-matrix PNG and a contact sheet of misclassified crops.

matplotlib's object API on an Agg canvas (no display, no global pyplot state, safe in threads),
as in ``sperm_d2.engine.plots``; files are written atomically."""

from __future__ import annotations

import os

import cv2
import numpy as np

from sperm_d2.atomic import write_bytes_atomic
from sperm_d2.image_io import figure_png, fit_within, tile_grid, write_image

CAPTION_H = 18  # pixels under each contact-sheet tile for its caption


def plot_confusion_matrix(
    cm: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Save ``cm`` (rows: true, columns: predicted) as an annotated heat map PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.4 + 1.2 * len(col_labels), 1.2 + 1.0 * len(row_labels)))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    ax.set_xticks(range(len(col_labels)), labels=col_labels)
    ax.set_yticks(range(len(row_labels)), labels=row_labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=10)
    half = cm.max() / 2 if cm.size else 0
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(int(v)), ha="center", va="center", color="white" if v > half else "black")
    fig.tight_layout()
    write_bytes_atomic(path, figure_png(fig))


def _captioned(image: np.ndarray, caption: str, tile: int) -> np.ndarray:
    cell = np.full((tile + CAPTION_H, tile, 3), 255, np.uint8)
    thumb = fit_within(image, tile)
    cell[: thumb.shape[0], : thumb.shape[1]] = thumb
    cv2.putText(
        cell,
        caption[:28],
        (2, tile + 13),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.38,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return cell


def contact_sheet(
    tiles: list[tuple[np.ndarray, str]], path: str | os.PathLike, tile: int = 160, cols: int = 6
) -> bool:
    """Save BGR images with a caption under each as one grid PNG; ``False`` if there are none."""
    if not tiles:
        return False
    write_image(path, tile_grid([_captioned(im, cap, tile) for im, cap in tiles], cols, fill=255))
    return True
