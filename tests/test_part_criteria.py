"""WHO criteria per sperm from part masks, on synthetic masks drawn at test time."""

import cv2
import numpy as np
import pytest

from sperm_d2.inference.criteria_report import criteria_rows
from sperm_d2.inference.part_criteria import (
    NEEDED_PARTS,
    assess_sperm,
    teratozoospermia_index,
)
from sperm_d2.inference.records import who_counts
from sperm_d2.inference.skeleton import skeleton_length

H, W = 200, 520


def _sperm(
    head_axes=(20, 13),
    acrosome_to=0,
    vacuoles=((0, 0, 2),),
    midpiece=(40, 6, 0.0),
    tail_length=300,
    x=120,
):
    """Part masks of a horizontal sperm, head centred at (x, 100) pointing left, midpiece and
    tail to the right. ``midpiece`` = (length, width, angle in degrees to the head axis)."""
    a, b = head_axes
    cx, cy = x, 100
    head = np.zeros((H, W), np.uint8)
    cv2.ellipse(head, (cx, cy), (a, b), 0, 0, 360, 1, -1)
    acro = head.copy()
    acro[:, cx + acrosome_to :] = 0  # the front (left) part, by default the front half
    nucl = head & (1 - acro)
    vac = np.zeros((H, W), np.uint8)
    for dx, dy, r in vacuoles:
        cv2.circle(vac, (cx + 6 + dx, cy + dy), r, 1, -1)
    parts = {"acrosome": acro, "nucleus": nucl, "vacuole": vac}
    if midpiece:
        length, width, angle = midpiece
        t = np.radians(angle)
        end = (int(cx + a + length * np.cos(t)), int(cy + length * np.sin(t)))
        mid = np.zeros((H, W), np.uint8)
        cv2.line(mid, (cx + a, cy), end, 1, width)
        mid &= 1 - head
        parts["midpiece"] = mid
        if tail_length:
            tail = np.zeros((H, W), np.uint8)
            cv2.line(tail, end, (end[0] + tail_length, end[1]), 1, 3)
            parts["tail"] = tail & (1 - mid)
    return {k: v.astype(bool) for k, v in parts.items()}


def test_a_normal_sperm_is_normal_with_its_measurements() -> None:
    c = assess_sperm(_sperm())
    assert c.grade == "normal", (c.failed, c.not_assessed)
    assert c.head_length_px == pytest.approx(40, abs=1.5)
    assert c.head_width_px == pytest.approx(26, abs=1.5)
    assert 45 < c.acrosome_share < 55 and c.vacuole_count == 1 and c.vacuole_share < 5
    assert c.midpiece_length_px == pytest.approx(
        46, abs=3
    )  # line + round caps and c.midpiece_angle_deg < 5
    assert c.tail_length_px == pytest.approx(300, abs=10)  # thinning shortens the ends
    assert c.head_length_um is None
    um = assess_sperm(_sperm(), um_per_px=0.1)  # 4.0 x 2.6 um: within WHO's ranges
    assert um.grade == "normal" and um.head_length_um == pytest.approx(4.0, abs=0.15)
    row = um.as_row()
    assert row["who_grade"] == "normal" and row["who_failed"] == ""


@pytest.mark.parametrize(
    "kwargs, failed",
    [
        (dict(acrosome_to=-14), "acrosome_share"),  # a thin acrosome cap
        (dict(vacuoles=((-12, 0, 2), (-4, 0, 2), (4, 0, 2))), "vacuole_count"),
        (dict(vacuoles=((-6, 0, 8),)), "vacuole_share"),
        (dict(midpiece=(90, 6, 0.0)), "midpiece_length"),
        (dict(midpiece=(40, 18, 0.0)), "midpiece_width"),
        (dict(midpiece=(40, 6, 60.0)), "midpiece_angle"),
        (dict(tail_length=100), "tail_length"),
        (dict(head_axes=(20, 19)), "head_ellipticity"),  # round head
    ],
)
def test_each_criterion_fails_alone(kwargs, failed) -> None:
    c = assess_sperm(_sperm(**kwargs))
    assert c.grade == "abnormal"
    assert [f.split(":")[0] for f in c.failed] == [failed]


def test_head_size_in_um() -> None:
    c = assess_sperm(_sperm(), um_per_px=0.2)  # 8 um long: too large
    assert c.grade == "abnormal"
    assert {f.split(":")[0] for f in c.failed} == {"head_length", "head_width"}


def test_head_size_without_a_pixel_size_is_noted_but_does_not_change_the_grade() -> None:
    """Without a pixel size the head's µm criteria cannot be judged: the sperm says so in
    ``not_assessed``, and its grade rests on the other criteria as before."""
    for kwargs, grade in ((dict(), "normal"), (dict(acrosome_to=-14), "abnormal")):
        c = assess_sperm(_sperm(**kwargs))
        assert c.grade == grade and c.not_assessed == ["head_size_no_scale"]
        assert c.head_length_um is None and c.head_width_um is None
        assert c.as_row()["who_not_assessed"] == "head_size_no_scale"
    # the note is no blocking gap: it rides along with the others and leaves the grade alone
    long = assess_sperm(_sperm(tail_length=400))
    assert long.grade == "normal"
    assert long.not_assessed == ["head_size_no_scale", "tail_cut_by_border"]
    cut = assess_sperm(_sperm(x=10))
    assert cut.grade == "not assessable" and "head_size_no_scale" in cut.not_assessed
    # with a pixel size the µm checks run, and there is nothing to note
    um = assess_sperm(_sperm(), um_per_px=0.1)
    assert um.grade == "normal" and um.not_assessed == [] and um.head_length_um is not None
    big = assess_sperm(_sperm(), um_per_px=0.2)
    assert big.grade == "abnormal" and "head_size_no_scale" not in big.not_assessed
    # a missing head is missing, not unscaled
    empty = assess_sperm({"nucleus": np.zeros((H, W), bool)})
    assert empty.not_assessed == ["missing:head", *(f"missing:{n}" for n in NEEDED_PARTS)]


def test_head_size_note_leaves_the_counts_defects_and_tzi_alone() -> None:
    """Downstream counts go by the grade: the note makes no sperm "not assessable", and the
    defects per region and the teratozoospermia index are those of a run with a pixel size whose
    heads are all of normal size."""
    kinds = (dict(), dict(acrosome_to=-14), dict(acrosome_to=-14, midpiece=(40, 6, 60.0)))
    by_scale = {um: [assess_sperm(_sperm(**k), um_per_px=um) for k in kinds] for um in (0, 0.1)}
    assert all("head_size_no_scale" in c.not_assessed for c in by_scale[0])
    rows = {um: [c.as_row() for c in cs] for um, cs in by_scale.items()}
    counts = who_counts(rows[0])
    assert counts == who_counts(rows[0.1])
    assert counts["normal"] == 1 and counts["abnormal"] == 2 and counts["not assessable"] == 0
    assert (counts["head_defects"], counts["midpiece_defects"], counts["defects"]) == (2, 1, 3)
    tzi = [teratozoospermia_index(cs) for cs in by_scale.values()]
    assert tzi == [pytest.approx(1.5)] * 2
    (row,) = criteria_rows([("S", {"who": counts})], lambda k, n: (0.0, 1.0), lambda p, ci: "")
    assert row[1:3] == [3, 1] and row[6] == 0 and row[-1] == "1.50"


def test_not_assessable_when_a_part_is_missing_or_the_head_is_cut() -> None:
    c = assess_sperm(_sperm(midpiece=None))
    assert c.grade == "not assessable" and "missing:midpiece" in c.not_assessed
    assert "missing:tail" in c.not_assessed
    cut = assess_sperm(_sperm(x=10))
    assert cut.grade == "not assessable" and "head_cut_by_border" in cut.not_assessed
    # a tail leaving the field is not measured, and does not make the sperm unassessable
    long = assess_sperm(_sperm(tail_length=400))
    assert long.grade == "normal" and "tail_cut_by_border" in long.not_assessed
    empty = assess_sperm({"nucleus": np.zeros((H, W), bool)})
    assert empty.grade == "not assessable" and empty.not_assessed[0] == "missing:head"


def test_criteria_do_not_depend_on_where_the_sperm_lies_or_the_field_size() -> None:
    """The measurements run on the box around the sperm: the same sperm in a larger field, at
    another place, and with a second sperm beside it in other masks, measures the same."""
    parts = _sperm(vacuoles=((0, 0, 2), (-8, 3, 2)), midpiece=(40, 6, 20.0))
    alone = assess_sperm(parts)
    head = parts["acrosome"] | parts["nucleus"] | parts["vacuole"]
    assert alone.head_area_px == head.sum() and alone.vacuole_count == 2
    assert alone.tail_length_px == skeleton_length(parts["tail"])
    for dy, dx in ((0, 0), (137, 411)):
        big = {}
        for name, m in parts.items():
            big[name] = np.zeros((H + 300, W + 600), bool)
            big[name][dy : dy + H, dx : dx + W] = m
        moved = assess_sperm(big)
        assert moved.as_row() == alone.as_row()
    # a head one pixel off the image's edge stays cut by the border although its box is small
    near = {n: np.pad(m[:, 9:], ((0, 0), (0, 9))) for n, m in _sperm(x=10).items()}
    assert "head_cut_by_border" in assess_sperm(near).not_assessed


def test_teratozoospermia_index_counts_regions_per_abnormal_sperm() -> None:
    normal = assess_sperm(_sperm())
    head = assess_sperm(_sperm(acrosome_to=-14))
    head_mid = assess_sperm(_sperm(acrosome_to=-14, midpiece=(40, 6, 60.0)))
    assert head_mid.regions_failed() == {"head", "midpiece"}
    assert teratozoospermia_index([normal, head, head_mid]) == pytest.approx(1.5)
    assert teratozoospermia_index([normal]) is None


def test_skeleton_length_of_lines() -> None:
    m = np.zeros((60, 200), np.uint8)
    cv2.line(m, (10, 30), (190, 30), 1, 5)
    assert skeleton_length(m) == pytest.approx(180, abs=6)
    d = np.zeros((160, 160), np.uint8)
    cv2.line(d, (10, 10), (150, 150), 1, 3)
    assert skeleton_length(d) == pytest.approx(140 * 2**0.5, rel=0.03)
    assert skeleton_length(np.zeros((5, 5), bool)) == 0.0


def _zhang_suen_by_pixel(mask: np.ndarray) -> np.ndarray:
    """Zhang & Suen (1984) as the paper states it, one pixel at a time (slow: the reference)."""
    img = np.pad(np.asarray(mask, bool).astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            remove = []
            for y, x in zip(*np.nonzero(img)):
                ring = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
                p = [img[y + dy, x + dx] for dy, dx in ring]  # P2..P9, clockwise from north
                a = sum(p[k] == 0 and p[(k + 1) % 8] == 1 for k in range(8))
                c = (p[0] * p[2] * p[4], p[2] * p[4] * p[6]) if step == 0 else (
                    p[0] * p[2] * p[6], p[0] * p[4] * p[6])  # fmt: skip
                if 2 <= sum(p) <= 6 and a == 1 and c == (0, 0):
                    remove.append((y, x))
            for y, x in remove:
                img[y, x] = 0
            changed |= bool(remove)
    return img[1:-1, 1:-1].astype(bool)


def test_thinning_is_zhang_suen() -> None:
    """The table-driven thinning removes exactly the pixels the paper's rule does (random
    blobs, thick lines, a filled ellipse)."""
    from sperm_d2.inference.skeleton import thin

    rng = np.random.default_rng(0)
    shapes = []
    for _ in range(12):
        m = (rng.random((24, 30)) < 0.55).astype(np.uint8)
        shapes.append(cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)))
    line = np.zeros((40, 60), np.uint8)
    cv2.line(line, (5, 30), (55, 8), 1, 5)
    blob = np.zeros((40, 40), np.uint8)
    cv2.ellipse(blob, (20, 20), (15, 9), 30, 0, 360, 1, -1)
    for m in shapes + [line, blob]:
        np.testing.assert_array_equal(thin(m), _zhang_suen_by_pixel(m))
