"""Evaluation figures: the confusion-matrix PNG and a contact sheet of misclassified crops."""

import os

import cv2
import numpy as np

from sperm_d2.inference.overlay import write_image


def plot_confusion_matrix(
    cm: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Save ``cm`` (rows: true, columns: predicted) as an annotated heat map PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.4 + 1.2 * len(col_labels), 1.2 + 1.0 * len(row_labels)))
    try:
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
        ax.set_xticks(range(len(col_labels)), labels=col_labels)
        ax.set_yticks(range(len(row_labels)), labels=row_labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title, fontsize=10)
        half = cm.max() / 2 if cm.size else 0
        for (i, j), v in np.ndenumerate(cm):
            ax.text(
                j, i, str(int(v)), ha="center", va="center", color="white" if v > half else "black"
            )
        fig.tight_layout()
        tmp = f"{path}.tmp.png"
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)


def contact_sheet(
    tiles: list[tuple[np.ndarray, str]], path: str | os.PathLike, tile: int = 160, cols: int = 6
) -> bool:
    """Save BGR images with a caption under each as one grid PNG; ``False`` if there are none."""
    if not tiles:
        return False
    caption_h = 18
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * (tile + caption_h), cols * tile, 3), 255, np.uint8)
    for k, (image, caption) in enumerate(tiles):
        r, c = divmod(k, cols)
        h, w = image.shape[:2]
        s = tile / max(h, w)
        thumb = cv2.resize(
            image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
        )
        y0, x0 = r * (tile + caption_h), c * tile
        sheet[y0 : y0 + thumb.shape[0], x0 : x0 + thumb.shape[1]] = thumb
        cv2.putText(
            sheet,
            caption[:28],
            (x0 + 2, y0 + tile + 13),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.38,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    write_image(str(path), sheet)
    return True
