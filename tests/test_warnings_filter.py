"""The CLIs' known-harmless warnings: each listed one is hidden, anything else still shows."""

import logging
import subprocess
import sys
import warnings

import pytest

from sperm_d2.warnings_filter import (
    KNOWN_HARMLESS,
    KNOWN_HARMLESS_LOGS,
    _DropKnownLogs,
    filter_known_warnings,
)

# a real text of each listed warning, as the libraries print it
SAMPLES = {
    r"`torch\.jit\.script` is deprecated": "`torch.jit.script` is deprecated. Please switch to "
    "`torch.compile` or `torch.export`.",
    r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing": (
        "torch.meshgrid: in an upcoming release, it will be required to pass the indexing "
        "argument. (Triggered internally at TensorShape.cpp:4221.)"
    ),
    r"The given NumPy array is not writable": "The given NumPy array is not writable, and PyTorch "
    "does not support non-writable tensors.",
    r"pkg_resources is deprecated as an API": "pkg_resources is deprecated as an API. See "
    "https://setuptools.pypa.io/en/latest/pkg_resources.html",
    r"__array__ implementation doesn't accept a copy keyword": "__array__ implementation doesn't "
    "accept a copy keyword, so passing copy=False failed.",
}


@pytest.fixture
def torch_loggers():
    """The loggers of KNOWN_HARMLESS_LOGS, their filters restored afterwards."""
    loggers = [logging.getLogger(name) for name, _ in KNOWN_HARMLESS_LOGS]
    saved = [list(lg.filters) for lg in loggers]
    yield loggers
    for lg, filters in zip(loggers, saved):
        lg.filters[:] = filters


@pytest.fixture
def fresh_filters(torch_loggers):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filter_known_warnings()
        yield caught


def test_every_listed_warning_is_hidden(fresh_filters):
    assert set(SAMPLES) == {k.message for k in KNOWN_HARMLESS}, "a listed warning has no sample"
    for known in KNOWN_HARMLESS:
        assert known.why
        warnings.warn(SAMPLES[known.message], known.category)
    assert fresh_filters == []


def test_unknown_warnings_still_show(fresh_filters):
    warnings.warn("checkpoint has no weights for roi_heads", UserWarning)
    warnings.warn("`torch.jit.trace` is deprecated", FutureWarning)  # not the listed message
    # a listed message under another category is not the listed warning either
    warnings.warn(SAMPLES[KNOWN_HARMLESS[1].message], RuntimeWarning)
    assert [str(w.message)[:20] for w in fresh_filters] == [
        "checkpoint has no we",
        "`torch.jit.trace` is",
        "torch.meshgrid: in a",
    ]


def test_known_torch_log_messages_are_dropped_others_kept(caplog, torch_loggers):
    logger = torch_loggers[0]
    logger.filters[:] = [f for f in logger.filters if not isinstance(f, _DropKnownLogs)]
    before = len(logger.filters)
    filter_known_warnings()
    filter_known_warnings()  # idempotent: one filter per logger
    assert len(logger.filters) == before + 1
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("is_fx_tracing will return true for both fx.symbolic_trace and more")
        logger.warning("something torch really wants you to know")
    assert [r.getMessage() for r in caplog.records] == ["something torch really wants you to know"]


def test_the_cli_import_filters_in_a_fresh_interpreter():
    code = (
        "import warnings, sperm_d2.cli_warnings, detectron2.layers;"
        "warnings.warn('an unexpected problem', UserWarning)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "torch.jit.script" not in proc.stderr  # detectron2.layers triggers it at import
    assert "UserWarning: an unexpected problem" in proc.stderr
