"""sperm_d2.image_io: one list of extensions, checked encoding, the grid tiler; and the evaluation
package's numpy-only modules loading without detectron2."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from sperm_d2.image_io import (
    IMAGE_EXTS,
    encode_image,
    fit_within,
    image_shape_problem,
    is_image_path,
    png_data_uri,
    read_image,
    tile_grid,
    write_image,
)


def test_one_list_of_image_extensions_is_used_everywhere():
    from sperm_d2.inference import sources

    assert sources.IMAGE_EXTS is IMAGE_EXTS
    assert is_image_path("a/B.PNG") and is_image_path("x.webp") and not is_image_path("v.mp4")


def test_write_image_round_trips_and_refuses_what_opencv_cannot_encode(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (19, 21, 3), np.uint8)
    write_image(tmp_path / "a.png", image)
    assert np.array_equal(read_image(tmp_path / "a.png")[0], image)
    assert list(tmp_path.iterdir()) == [tmp_path / "a.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="b.nosuchformat"):
        write_image(tmp_path / "b.nosuchformat", image)
    with pytest.raises(ValueError):
        encode_image(np.zeros((0, 0, 3), np.uint8))
    assert not (tmp_path / "b.nosuchformat").exists()
    assert png_data_uri(image).startswith("data:image/png;base64,iVBOR")


def test_tile_grid_places_tiles_row_by_row_in_equal_cells():
    tiles = [np.full((4, 6, 3), v, np.uint8) for v in (10, 20, 30)] + [
        np.full((2, 2), 40, np.uint8)
    ]
    grid = tile_grid(tiles, cols=3, fill=255)
    assert grid.shape == (8, 18, 3)
    assert grid[0, 0, 0] == 10 and grid[0, 6, 0] == 20 and grid[0, 12, 0] == 30
    assert grid[4, 0, 0] == 40 and grid[7, 17, 0] == 255  # grey tile made BGR; the rest is fill
    with pytest.raises(ValueError):
        tile_grid([], cols=3)
    assert fit_within(np.zeros((10, 40, 3), np.uint8), 20).shape == (5, 20, 3)


def test_numpy_only_evaluation_modules_do_not_import_detectron2():
    code = (
        "import sys, sperm_d2.evaluation.classification, sperm_d2.image_io;"
        "print(sorted(m for m in ('detectron2', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_evaluation_package_still_offers_its_names_lazily():
    import sperm_d2.evaluation as ev

    assert ev.build_evaluator.__module__ == "sperm_d2.evaluation.evaluators"
    assert ev.GradedImage.__module__ == "sperm_d2.evaluation.classification"
    with pytest.raises(AttributeError):
        ev.no_such_name  # noqa: B018


def test_grey_images_are_read_as_bgr(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((16, 24), np.uint8))
    assert read_image(tmp_path / "g.png")[0].shape == (16, 24, 3)


@pytest.mark.parametrize("width, height", [(3000, 40), (40, 3000)])
def test_an_elongated_image_is_worded_for_either_orientation(width, height):
    """Before: a wide strip was called longer than a multiple of its width."""
    problem = image_shape_problem(width, height)
    assert problem.startswith(f"is {width}x{height} px, its long side more than ")
    assert "times its short side" in problem and "its width" not in problem
    assert image_shape_problem(800, 40) is None and image_shape_problem(40, 800) is None  # 20:1
