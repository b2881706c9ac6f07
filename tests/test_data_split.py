"""Stratified splits and k-fold: deterministic, order independent, proportional, disjoint."""

from collections import Counter

import pytest

from sperm_d2.data.split import kfold_split, parse_ratios, stratified_split

KEYS = [f"img_{i:03d}.json" for i in range(100)]
STRATA = ["good"] * 60 + ["bad"] * 30 + ["none"] * 10


def test_parse_ratios() -> None:
    assert parse_ratios("0.8,0.2") == (0.8, 0.2)
    assert parse_ratios("7,1.5,1.5") == pytest.approx((0.7, 0.15, 0.15))
    # ratios whose sum overflows: normalised, not turned into 0,0 and refused as "[0.0, 0.0]"
    assert parse_ratios("1e308,1e308") == (0.5, 0.5)
    assert parse_ratios("1.5e308,1e308,1e308") == pytest.approx((3 / 7, 2 / 7, 2 / 7))
    for bad in ("a,b", "1,2,3,4", "-1,2", "0,0"):
        with pytest.raises(ValueError, match="--split"):
            parse_ratios(bad)


def test_stratified_split_proportions_and_cover() -> None:
    parts = stratified_split(KEYS, STRATA, (0.7, 0.15, 0.15), seed=0)
    assert [len(p) for p in parts] == [70, 15, 15]
    assert sorted(i for p in parts for i in p) == list(range(100))
    for p, ratio in zip(parts, (0.7, 0.15, 0.15)):
        c = Counter(STRATA[i] for i in p)
        assert abs(c["good"] - 60 * ratio) <= 1 and abs(c["bad"] - 30 * ratio) <= 1
        assert abs(c["none"] - 10 * ratio) <= 1


def test_stratified_split_is_deterministic_and_order_independent() -> None:
    a = stratified_split(KEYS, STRATA, (0.8, 0.2), seed=3)
    order = list(reversed(range(100)))
    b = stratified_split([KEYS[i] for i in order], [STRATA[i] for i in order], (0.8, 0.2), seed=3)
    assert [[KEYS[i] for i in p] for p in a] == [[KEYS[order[i]] for i in p] for p in b]
    c = stratified_split(KEYS, STRATA, (0.8, 0.2), seed=4)
    assert a != c  # another seed gives another split


def test_kfold_disjoint_and_covering() -> None:
    folds = kfold_split(KEYS, STRATA, 5, seed=1)
    vals = [set(v) for _, v in folds]
    assert all(len(v) == 20 for v in vals)
    assert set().union(*vals) == set(range(100))
    assert all(not (a & b) for i, a in enumerate(vals) for b in vals[i + 1 :])
    for train, val in folds:
        assert not set(train) & set(val) and len(train) + len(val) == 100
        assert Counter(STRATA[i] for i in val)["good"] == 12
    with pytest.raises(ValueError):
        kfold_split(KEYS, STRATA, 1)
