"""Draw predictions on an image: translucent masks, outlines, class and score labels.

Plain OpenCV (about 1 ms per crop) rather than detectron2's matplotlib ``Visualizer``, which
costs more than the model itself on small crops. Colours are fixed per class, so the same class
has the same colour in every image and every video frame.
"""

import cv2
import numpy as np

from sperm_d2.inference.types import ImagePrediction


def class_colors_bgr(class_colors_rgb: list[list[int]]) -> list[tuple[int, int, int]]:
    """``cfg.SPERM.CLASS_COLORS`` (RGB) as OpenCV BGR tuples."""
    return [(int(b), int(g), int(r)) for r, g, b in class_colors_rgb]


def draw_prediction(
    image: np.ndarray,
    pred: ImagePrediction,
    colors_bgr: list[tuple[int, int, int]],
    alpha: float = 0.4,
    caption: str = "",
) -> np.ndarray:
    """Return a copy of the BGR ``image`` with ``pred`` drawn on it (the input is not modified)."""
    out = image.copy()
    if len(pred):
        tint = out.copy()
        for mask, cls in zip(pred.masks, pred.classes):
            tint[mask] = colors_bgr[int(cls) % len(colors_bgr)]
        cv2.addWeighted(tint, alpha, out, 1 - alpha, 0, dst=out)
    scale = max(0.3, min(out.shape[:2]) / 500)
    thickness = 1 if scale < 0.8 else 2
    for i, (mask, box, cls, score) in enumerate(
        zip(pred.masks, pred.boxes, pred.classes, pred.scores)
    ):
        color = colors_bgr[int(cls) % len(colors_bgr)]
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, color, thickness, cv2.LINE_AA)
        # graded heads show the grader's p_bad; detector-only heads the detector's score
        detail = f"p_bad {pred.p_bad[i]:.2f}" if pred.p_bad is not None else f"{score:.2f}"
        text = f"{pred.class_names[int(cls)]} {detail}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x0, y0 = max(0, min(int(box[0]), out.shape[1] - tw)), int(box[1])  # keep it in the image
        y = y0 - 2 if y0 - th - base >= 0 else min(int(box[3]) + th + 2, out.shape[0] - 1)
        cv2.rectangle(out, (x0, y - th - base + 1), (x0 + tw, y + base - 1), color, -1)
        cv2.putText(
            out, text, (x0, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    if caption:
        cv2.putText(out, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(
            out, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out
