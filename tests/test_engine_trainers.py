"""One trainer class per model kind on a shared base, picked by ``MODEL.META_ARCHITECTURE``."""

import ast

import pytest

from .conftest import REPO

CONFIGS = REPO / "configs" / "quick_schedules"


@pytest.mark.parametrize(
    "config,trainer",
    [
        ("sperm_mask_rcnn_R_50_FPN_instant_test.yaml", "SpermTrainer"),
        ("sperm_grader_instant_test.yaml", "GraderTrainer"),
        ("sperm_parts_instant_test.yaml", "PartTrainer"),
    ],
)
def test_each_model_kind_gets_its_trainer(config, trainer) -> None:
    from sperm_d2.config import setup_cfg
    from sperm_d2.engine.trainer import SpermTrainer
    from sperm_d2.engine.trainers import trainer_class

    cls = trainer_class(setup_cfg(str(CONFIGS / config), ["MODEL.DEVICE", "cpu"]))
    assert cls.__name__ == trainer and issubclass(cls, SpermTrainer)


def test_an_epoch_counts_images_for_the_detector_and_heads_for_the_grader() -> None:
    from sperm_d2.engine.grader_trainer import GraderTrainer
    from sperm_d2.engine.trainer import SpermTrainer

    records = [
        {"annotations": [{"iscrowd": 0}, {"iscrowd": 0}]},
        {"annotations": [{"iscrowd": 1}]},
        {"annotations": []},
    ]
    assert SpermTrainer.epoch_samples(records) == 3
    assert GraderTrainer.epoch_samples(records) == 2


def test_no_trainer_switches_on_the_model_kind() -> None:
    """The trainers override build_* methods; none asks which model it trains."""
    for path in (REPO / "sperm_d2" / "engine").glob("*.py"):
        calls = [
            n.func.id
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        ]
        assert "is_grader" not in calls and "is_part_segmenter" not in calls, path.name
