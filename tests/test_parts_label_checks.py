"""Annotated heads that contradict anatomy (no acrosome, a nucleus of 2+ polygons), found from
the polygons alone (test_parts_parse.py: the benchmark's head metrics count them apart)."""

from sperm_d2.parts.label_checks import split_nucleus_groups
from sperm_d2.parts.targets import PART_CLASSES

SQUARE = [0, 0, 4, 0, 4, 4, 0, 4]
ACROSOME, NUCLEUS, TAIL = (PART_CLASSES.index(n) for n in ("acrosome", "nucleus", "tail"))


def _ann(gid, category, *polygons):
    return {"group_id": gid, "category_id": category, "segmentation": [list(p) for p in polygons]}


def test_split_nucleus_groups_are_acrosome_less_heads_with_two_nucleus_polygons() -> None:
    anns = [
        _ann(1, ACROSOME, SQUARE),  # a normal head
        _ann(1, NUCLEUS, SQUARE),
        _ann(2, NUCLEUS, SQUARE, SQUARE),  # the acrosome drawn as a second nucleus
        _ann(3, ACROSOME, SQUARE),  # an acrosome: two nucleus polygons are left alone
        _ann(3, NUCLEUS, SQUARE, SQUARE),
        _ann(4, NUCLEUS, SQUARE),  # the two polygons in two annotations
        _ann(4, NUCLEUS, SQUARE),
        _ann(4, TAIL, SQUARE),
        _ann(5, NUCLEUS, SQUARE, [0, 0, 1, 1]),  # a degenerate polygon encloses nothing
        _ann(6, NUCLEUS, SQUARE),  # one nucleus and no acrosome: maybe a real defect
        {"category_id": NUCLEUS, "segmentation": [SQUARE, SQUARE]},  # no group: no sperm
        {**_ann(7, NUCLEUS, SQUARE, SQUARE), "iscrowd": 1},
    ]
    assert split_nucleus_groups(anns, PART_CLASSES) == {2, 4}
    assert split_nucleus_groups(anns, ["head"]) == set()
    assert split_nucleus_groups([], PART_CLASSES) == set()
