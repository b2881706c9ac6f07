"""One name per thing across the tools (issue 22, item 3): the new flags work, the old ones still
work for one release with one warning line naming the new flag, --help and README show only the
new names, and config overrides follow one convention (``--opts``; train_net.py and
visualize_data.py also take them trailing, as detectron2's own tools do)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from sperm_d2.cli import config_overrides
from sperm_d2.data.synthetic_io import make_synthetic_dataset

from .conftest import REPO
from .hostile_inputs import load_tool, run_main

#: (tool, old flag, new flag, value, destination)
RENAMED = [
    ("evaluate", "--min-score", "--score-floor", "0.2", "score_floor"),
    ("prepare_data", "--labels", "--label-map", "x.yaml", "label_map"),
    ("balance_data", "--labels", "--label-map", "x.yaml", "label_map"),
    ("visualize_data", "--output-dir", "--output", "vis", "output"),
]
REQUIRED = {
    "evaluate": ["--config-file", "c.yaml", "--output", "o"],
    "prepare_data": ["--input", "i", "--output", "o"],
    "balance_data": ["--input", "i", "--output", "o"],
    "visualize_data": ["--config-file", "c.yaml"],
}


def _parse(tool: str, argv: list[str]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        args = load_tool(tool).get_parser().parse_args(argv)
    return args, err.getvalue()


@pytest.mark.parametrize("tool,old,new,value,dest", RENAMED)
def test_new_flag_works_without_warning(tool, old, new, value, dest):
    args, err = _parse(tool, [*REQUIRED[tool], new, value])
    assert str(getattr(args, dest)) == str(float(value) if dest == "score_floor" else value)
    assert err == ""


@pytest.mark.parametrize("tool,old,new,value,dest", RENAMED)
def test_old_flag_still_works_with_one_warning_line(tool, old, new, value, dest):
    args, err = _parse(tool, [*REQUIRED[tool], old, value])
    assert str(getattr(args, dest)) == str(float(value) if dest == "score_floor" else value)
    lines = err.splitlines()
    assert len(lines) == 1 and old in lines[0] and new in lines[0] and "deprecated" in lines[0]


@pytest.mark.parametrize("tool,old,new,value,dest", RENAMED)
def test_help_shows_only_the_new_flag(tool, old, new, value, dest):
    text = load_tool(tool).get_parser().format_help()
    assert new in text and not re.search(rf"{old}(?![-\w])", text)


def test_old_flag_keeps_the_new_flags_checks():
    """--min-score 2 is refused as --score-floor 2 is (argparse's one line naming the flag)."""
    parser = load_tool("evaluate").get_parser()
    for flag in ("--score-floor", "--min-score"):
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
            parser.parse_args([*REQUIRED["evaluate"], flag, "2"])
        assert flag in err.getvalue() and "outside [0, 1]" in err.getvalue()


def test_default_stands_without_either_flag():
    args, _ = _parse("evaluate", REQUIRED["evaluate"])
    assert args.score_floor == 0.05
    args, _ = _parse("prepare_data", REQUIRED["prepare_data"])
    assert args.label_map == "configs/labels/default.yaml"


def test_prepare_data_runs_with_the_old_label_flag(tmp_path):
    """End to end: the deprecated --labels still converts a labelme folder (exit 0)."""
    src = make_synthetic_dataset(tmp_path / "in", 6, 64, seed=1)
    labels = str(REPO / "configs/labels/default.yaml")
    argv = ["--input", str(src), "--output", str(tmp_path / "out"), "--split", "0.5,0.5"]
    new = run_main(load_tool("prepare_data").main, [*argv, "--label-map", labels])
    old = run_main(
        load_tool("prepare_data").main,
        [*argv[:3], str(tmp_path / "out2"), *argv[4:], "--labels", labels],
    )
    assert new.code == 0 and old.code == 0, (new.stderr, old.stderr)
    assert "--labels is deprecated" in old.stderr and "--label-map" in old.stderr
    assert "deprecated" not in new.stderr
    assert (tmp_path / "out2/annotations/train.json").is_file()


@pytest.mark.parametrize("tool", ["train_net", "visualize_data"])
@pytest.mark.parametrize(
    "tail,expected",
    [
        (["A", "1"], ["A", "1"]),
        (["--opts", "A", "1"], ["A", "1"]),
        (["A", "1", "--opts", "B", "2"], ["A", "1", "B", "2"]),
        ([], []),
    ],
)
def test_overrides_trailing_or_after_opts(tool, tail, expected):
    base = ["--config-file", "c.yaml"] + (["--output", "o"] if tool == "visualize_data" else [])
    args, err = _parse(tool, [*base, *tail])
    assert config_overrides(args) == expected and err == ""


@pytest.mark.parametrize("tool", ["infer", "evaluate"])
def test_infer_and_evaluate_take_opts(tool):
    extra = ["--input", "x.png"] if tool == "infer" else []
    argv = ["--config-file", "c.yaml", "--output", "o", *extra, "--opts", "A", "1"]
    args, _ = _parse(tool, argv)
    assert args.opts == ["A", "1"]


@pytest.mark.parametrize("tool", ["train_net", "visualize_data", "infer", "evaluate"])
def test_every_config_tool_documents_opts(tool):
    assert "--opts" in load_tool(tool).get_parser().format_help()


def test_readme_names_only_the_new_flags():
    for doc in ("README.md", "datasets/README.md", "ARCHITECTURE.md"):
        text = (REPO / doc).read_text()
        for old in ("--min-score", "--labels"):
            assert not re.search(rf"{old}(?![-\w])", text), f"{doc} still names {old}"
    readme = (REPO / "README.md").read_text()
    for new in ("--score-floor", "--label-map", "--confidence-threshold", "--opts"):
        assert new in readme
