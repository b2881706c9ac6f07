"""Test-time flip views: one table for the detector (``SPERM.INFER_TTA``), the grader
(``SPERM.GRADER.TTA``) and the part segmenter (``SPERM.PARTS.TTA``).

A microscope field, and a head's canonical crop, have no up, down, left or right: a head flipped
is a head, and training draws these flips. Each view names its flips: "" the image as given,
"h" left-right, "v" up-down, "hv" both (a 180-degree rotation).
"""

from __future__ import annotations

#: a TTA mode -> its views
VIEWS = {
    "none": ("",),
    "hflip": ("", "h"),
    "rot180": ("", "hv"),
    "flips": ("", "h", "v", "hv"),
}


def flip_dims(view: str, width_dim: int = -1, height_dim: int = -2) -> tuple[int, ...]:
    """The dimensions of a tensor that ``view`` flips (``torch.flip``'s ``dims``)."""
    return tuple(d for d, f in ((width_dim, "h"), (height_dim, "v")) if f in view)
