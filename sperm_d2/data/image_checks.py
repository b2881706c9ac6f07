"""Whether ``prepare_data.py`` accepts an image file for how it is stored.

Apart from what an image shows, a file is refused for its size (empty, over
:data:`~sperm_d2.image_io.MAX_IMAGE_PIXELS`, or out of
:func:`~sperm_d2.image_io.image_shape_problem`'s limits), its depth (more than a byte per channel,
which detectron2's training reader would clip), an EXIF orientation tag Pillow applies on open
(detectron2's training reader would apply it again), or data that does not decode (truncated,
corrupt, not an image).
Pure Python + PIL (no torch, no detectron2), as :mod:`sperm_d2.data.convert`, which calls it.
"""

from __future__ import annotations

import io
import os
import warnings

from PIL import Image, UnidentifiedImageError

from sperm_d2.data.problems import first_line
from sperm_d2.errors import SpermInputError
from sperm_d2.image_io import (
    MAX_IMAGE_PIXELS,
    TRANSPOSED_ORIENTATIONS,
    exif_orientation,
    image_shape_problem,
    preoriented_exif_tag,
)

_DRAFT_FORMATS = ("JPEG", "MPO")  # decoded at reduced scale by image_size (same checks)
#: PIL modes of one-channel images deeper than 8 bits. detectron2's training reader converts
#: them with PIL, which clips every value above 255 instead of scaling it (inference's OpenCV
#: reader scales): the model would train on white images, so they are refused here.
_CLIPPED_MODES = {"I": "32-bit integer grey", "F": "32-bit float grey"}


class ImageProblem(SpermInputError, ValueError):
    """An image that cannot be used; the message says why (without the file name)."""


def image_size(data: bytes) -> tuple[int, int, str]:
    """(width, height, format) of an encoded image, decoded in full.

    The size is the one labelme, inference and detectron2 see: the upright image, its EXIF
    orientation applied once (the tag is read after decoding: Pillow has already applied a
    TIFF's on open, see :mod:`sperm_d2.image_io`).
    A JPEG is decoded at 1/8 scale in grey (libjpeg's DCT scaling, PIL's ``draft``): all of its
    entropy-coded data is still decoded, so a truncated or corrupt file fails as at full size,
    at about half the cost (what it skips is the full inverse DCT, upsampling and colour
    conversion, which cannot fail); if it fails, the full decode decides, so the verdict and
    message are the full decode's (``tests/test_data_convert_fast.py`` checks truncations and
    byte flips).

    Raises:
        ImageProblem: not an image, over :data:`MAX_IMAGE_PIXELS`, more than 8 bits in one
            channel (:data:`_CLIPPED_MODES`), truncated or corrupt, or an orientation tag
            detectron2's training reader would apply twice (a turned TIFF), or a size out of
            :func:`sperm_d2.image_io.image_shape_problem`'s limits.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageProblem(
                        f"is {w}x{h} = {w * h} pixels, over the limit of {MAX_IMAGE_PIXELS}"
                    )
                clipped = _clipped_mode_problem(im.mode)
                if clipped:
                    raise ImageProblem(clipped)
                fmt = (im.format or "png").lower()
                stored = exif_orientation(im)
                _decode(im, data, w, h)  # a truncated file fails here, not at training time
                orientation = exif_orientation(im)  # what is left to apply after decoding
    except Image.DecompressionBombError:
        raise ImageProblem(
            f"claims over {2 * MAX_IMAGE_PIXELS} pixels, over the limit of {MAX_IMAGE_PIXELS}"
        ) from None
    except UnidentifiedImageError:
        raise ImageProblem("is not an image PIL can read") from None
    except ImageProblem:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for corrupt data
        raise ImageProblem(f"cannot be decoded ({first_line(e)})") from None
    if w <= 0 or h <= 0:
        raise ImageProblem(f"has an empty size {w}x{h}")
    if stored is not None and orientation != stored:
        raise ImageProblem(
            f"is a {fmt.upper()} with EXIF orientation {stored}, which Pillow applies on open "
            "and detectron2's training reader applies again (it would train on a turned image): "
            "save it upright without the orientation tag (e.g. as PNG)"
        )
    shape = image_shape_problem(w, h)
    if shape:
        raise ImageProblem(shape)
    return (h, w, fmt) if orientation in TRANSPOSED_ORIENTATIONS else (w, h, fmt)


def _clipped_mode_problem(mode: str) -> str | None:
    """Why an image of PIL ``mode`` is refused for its depth (:data:`_CLIPPED_MODES`), or
    ``None``."""
    if mode in _CLIPPED_MODES or mode.startswith("I;16"):
        return (
            f"is a {_CLIPPED_MODES.get(mode, '16-bit grey')} image (mode {mode}); training reads "
            "it clipped to 8 bits (all but the darkest pixels white): save it as 8-bit"
        )
    return None


def stored_format_problem(path: str | os.PathLike) -> str | None:
    """Why :func:`image_size` would refuse the image at ``path`` for how it is stored rather than
    for what it shows: more than 8 bits in one channel, or an orientation tag Pillow applies on
    open (:func:`sperm_d2.image_io.preoriented_exif_tag`). ``None`` for an image it accepts that
    way, and for a file PIL cannot read (corrupt or not an image: :func:`image_size` says why).

    ``infer.py --labelme`` writes such an image decoded (8-bit, upright) instead of copying it,
    so that the copy it hands the annotator is one this converter takes.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                clipped = _clipped_mode_problem(im.mode)
    except Exception:  # noqa: BLE001 - unreadable: not a question of format
        return None
    if clipped:
        return clipped
    tag = preoriented_exif_tag(path)
    return f"has an EXIF orientation {tag} Pillow applies on open" if tag else None


def _decode(im: Image.Image, data: bytes, w: int, h: int) -> None:
    """Decode ``im`` (opened from ``data``) for its errors alone: a JPEG at 1/8 scale in grey.
    Should that fail, the full decode decides (and words the error): a file libjpeg cannot
    scale (lossless JPEG) is judged as before."""
    if im.format not in _DRAFT_FORMATS:
        im.load()
        return
    try:
        im.draft("L", (max(1, w // 8), max(1, h // 8)))
        im.load()
    except Exception:
        with Image.open(io.BytesIO(data)) as full:
            full.load()
