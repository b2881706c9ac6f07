"""Training curves as PNG files (matplotlib's Agg canvas: no display, no global pyplot state)."""

from __future__ import annotations

import logging
from pathlib import Path

from sperm_d2.atomic import write_bytes_atomic
from sperm_d2.image_io import figure_png

logger = logging.getLogger(__name__)

#: file names written by :func:`plot_training`
LOSS_PNG = "plot_loss.png"
VAL_LOSS_PNG = "plot_validation_loss.png"
AP_PNG = "plot_ap.png"


def _series(metrics: dict[int, dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(it, float(row[key])) for it, row in sorted(metrics.items()) if key in row]
    return [p[0] for p in pts], [p[1] for p in pts]


def _save(fig, path: Path) -> None:
    write_bytes_atomic(path, figure_png(fig, dpi=100, tight=True))


def _figure(title: str, ylabel: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _plot_keys(ax, metrics: dict[int, dict], keys: list[str], scale: float = 1.0, **kw) -> int:
    drawn = 0
    for key in keys:
        x, y = _series(metrics, key)
        if x:
            ax.plot(x, [v * scale for v in y], marker="o" if len(x) < 30 else None, label=key, **kw)
            drawn += 1
    return drawn


def plot_training(metrics: dict[int, dict], out_dir: str | Path) -> list[Path]:
    """Draw the loss, validation-loss and AP curves present in ``metrics``; returns the files.

    ``metrics`` maps iteration -> scalars (see ``read_metrics``). A figure whose numbers are not
    there yet (no evaluation so far) is skipped rather than drawn empty.
    """
    out_dir = Path(out_dir)
    keys = sorted({k for row in metrics.values() for k in row})
    written = []

    fig, ax = _figure("training loss", "loss")
    loss_keys = ["total_loss"] + [k for k in keys if k.startswith("loss_")]
    if _plot_keys(ax, metrics, loss_keys):
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        _save(fig, out_dir / LOSS_PNG)
        written.append(out_dir / LOSS_PNG)

    fig, ax = _figure("validation loss (training total for reference)", "loss")
    val_keys = ["validation_loss", "grader/loss"] + [k for k in keys if k.startswith("val_loss_")]
    if _plot_keys(ax, metrics, val_keys):
        _plot_keys(ax, metrics, ["total_loss"], linestyle=":", color="grey")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        _save(fig, out_dir / VAL_LOSS_PNG)
        written.append(out_dir / VAL_LOSS_PNG)

    fig, ax = _figure("validation AP", "AP (x100)")
    ap_keys = [k for k in keys if k.startswith(("segm/AP", "bbox/AP50"))]
    ap_keys = [k for k in ap_keys if not k.endswith(("APs", "APm", "APl"))]
    ap_keys += [k for k in ("parts/mIoU", "parts/IoU-head") if k in keys]  # in % as AP is
    drawn = _plot_keys(ax, metrics, ap_keys)
    drawn += _plot_keys(ax, metrics, ["pixellib/mAP50"], scale=100.0, linewidth=2.5, color="k")
    drawn += _plot_keys(
        ax, metrics, ["pixellib/mAP50_strict"], scale=100.0, linewidth=2.5, color="grey"
    )
    grader_keys = ["grader/accuracy", "grader/balanced_accuracy"]
    drawn += _plot_keys(ax, metrics, grader_keys, scale=100.0)
    if drawn:
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=8, title="pixellib/* and grader/* shown x100")
        _save(fig, out_dir / AP_PNG)
        written.append(out_dir / AP_PNG)
    return written
