"""The ``tools/infer.py`` job: inputs -> predictions -> overlays, CSV, JSONL, labelme, summary,
report (``report.html`` + ``REPORT.md``, :mod:`sperm_d2.inference.run_report`).

Images are decoded ahead in a background thread and their overlays/labelme files drawn and
written behind in another, so the model never waits for I/O. Unreadable inputs are skipped,
warned about in one line each and listed in ``summary.json``; they never stop the run. A video
that ends before its header's frame count is listed under ``incomplete`` with the frames read.

The outputs are built in a hidden folder beside ``output_dir`` and replace it as a whole at the
end (:func:`sperm_d2.output_folder.staged_dir`): an earlier run's overlays never sit next to a newer
run's CSV, and a run that fails, or processes nothing, leaves ``output_dir`` as it was.
"""

import csv
import dataclasses
import json
import logging
import time
from pathlib import Path

from tqdm import tqdm

from sperm_d2.atomic import atomic_write, real_path, write_json_atomic
from sperm_d2.image_io import read_image, write_image
from sperm_d2.inference.background import BackgroundWriter, prefetch
from sperm_d2.inference.head_gallery import HeadGallery
from sperm_d2.inference.labelme_export import export_labelme
from sperm_d2.inference.overlay import class_colors_bgr, draw_prediction
from sperm_d2.inference.predictor import SpermPredictor
from sperm_d2.inference.records import (
    INSTANCE_COLUMNS,
    SummaryAccumulator,
    image_record,
    instance_rows,
)
from sperm_d2.inference.run_report import HTML_NAME, MD_NAME, sample_key, write_run_report
from sperm_d2.inference.sources import (
    InputFile,
    VideoFrames,
    expand_inputs,
    video_info,
)
from sperm_d2.inference.video import VideoSink, predict_video
from sperm_d2.output_folder import check_output_dir, staged_dir

logger = logging.getLogger(__name__)

#: what ``run_inference`` writes at the top of its output folder (all it may replace there)
INFER_OUTPUTS = {"overlays", "videos", "labelme", "instances.csv", "images.jsonl", "summary.json"}
INFER_OUTPUTS |= {HTML_NAME, MD_NAME}


@dataclasses.dataclass
class InferOptions:
    """What ``run_inference`` writes and how (see ``tools/infer.py --help``)."""

    output_dir: Path
    um_per_px: float = 0.0
    frame_stride: int = 1
    labelme: bool = False
    overlays: bool = True
    overlay_ext: str = ".png"
    video_ext: str = ".mp4"
    # replace an earlier run's output folder (never one holding other files); the CLI sets it
    # from --overwrite, callers of the API get the replacement by default
    overwrite: bool = True
    report: bool = True  # report.html + REPORT.md (sperm_d2.inference.run_report)
    report_heads: int = 8  # gallery: most certain heads per class and borderline heads, per sample


class _NothingProcessed(Exception):
    """Raised inside the staging folder to drop it: a run that processed nothing writes nothing."""


class _Outputs:
    """The open streamed outputs of one run (CSV + JSONL) and the totals."""

    def __init__(self, csv_file, jsonl_file, class_names, gallery: HeadGallery | None) -> None:
        self.csv = csv.DictWriter(csv_file, fieldnames=INSTANCE_COLUMNS)
        self.csv.writeheader()
        self.jsonl = jsonl_file
        self.totals = SummaryAccumulator(class_names)
        self.gallery = gallery

    def add(self, pred, group: str, um_per_px: float, image, video: str | None = None) -> None:
        rows = instance_rows(pred, um_per_px)
        self.csv.writerows(rows)
        record = image_record(pred, group, rows)
        self.jsonl.write(json.dumps(record) + "\n")
        self.totals.add(record, video)
        if self.gallery is not None:
            key = sample_key(video, video=True) if video else sample_key(group)
            self.gallery.add(key, image, pred)


def run_inference(predictor: SpermPredictor, inputs: list[str], opts: InferOptions) -> dict:
    """Process images, folders, globs and videos; write every output; return the summary dict.

    ``summary["processed"]`` counts the inputs (images and videos) processed; 0 means nothing was,
    and then nothing is written (``output_dir`` is left as it was). Raises ``ValueError`` for an
    output folder it may not replace (:func:`sperm_d2.output_folder.check_output_dir`).
    """
    target = Path(opts.output_dir)
    check_output_dir(target, opts.overwrite, INFER_OUTPUTS)
    files, skipped = expand_inputs(inputs)
    # A previous run's outputs inside an input folder are not inputs.
    files = [f for f in files if not real_path(f.path).is_relative_to(real_path(target))]
    for p in skipped:
        logger.warning("skipped %s: %s", p["path"], p["reason"])
    summary: dict = {}
    colors = class_colors_bgr(predictor.class_colors)
    gallery = HeadGallery(colors, opts.report_heads, opts.report_heads) if opts.report else None
    try:
        with staged_dir(target) as out:
            run_opts = dataclasses.replace(opts, output_dir=out)
            summary = _run_all(predictor, files, run_opts, skipped, gallery)
            if not summary["processed"]:
                raise _NothingProcessed
            write_json_atomic(out / "summary.json", summary)
            if opts.report:
                _write_report(out, summary, gallery)
    except _NothingProcessed:
        logger.warning("nothing processed: %s left as it was", target)
    return summary


def _write_report(out: Path, summary: dict, gallery: HeadGallery | None) -> None:
    """The run report; a failure there is logged, and the run's data outputs are kept."""
    try:
        write_run_report(out, summary, gallery)
    except Exception as e:  # matplotlib, a full disk: the CSV/JSON outputs still stand
        logger.error("report.html / REPORT.md not written: %s: %s", type(e).__name__, e)


def _run_all(predictor, files: list[InputFile], opts: InferOptions, skipped: list, gallery) -> dict:
    """Run every file into ``opts.output_dir``; return the summary (not yet written)."""
    out = Path(opts.output_dir)
    colors = class_colors_bgr(predictor.class_colors)
    images = [f for f in files if f.kind == "image"]
    videos = [f for f in files if f.kind == "video"]
    incomplete: list[dict] = []
    start = time.perf_counter()
    frames_done = 0
    with (
        atomic_write(out / "instances.csv", "w", newline="", encoding="utf-8") as csv_file,
        atomic_write(out / "images.jsonl", "w", encoding="utf-8") as jsonl_file,
    ):
        outputs = _Outputs(csv_file, jsonl_file, predictor.class_names, gallery)
        done_images = _run_images(predictor, images, opts, outputs, colors, skipped)
        done_videos = 0
        for f in videos:
            n = _run_video(predictor, f, opts, outputs, colors, skipped, incomplete)
            done_videos += n > 0
            frames_done += n
    elapsed = time.perf_counter() - start
    return {
        "weights": predictor.weights,
        "grader": predictor.grader.source if predictor.grader else None,
        "parts": getattr(getattr(predictor, "parts", None), "source", None),
        "classes": list(predictor.class_names),
        "confidence_threshold": predictor.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        "test_size": [predictor.cfg.INPUT.MIN_SIZE_TEST, predictor.cfg.INPUT.MAX_SIZE_TEST],
        "um_per_px": opts.um_per_px or None,
        "processed": done_images + done_videos,
        "images_processed": done_images,
        "videos_processed": done_videos,
        "video_frames_processed": frames_done,
        "seconds": round(elapsed, 2),
        "images_per_second": round((done_images + frames_done) / elapsed, 3) if elapsed else None,
        "skipped": skipped,
        "incomplete": incomplete,
        "totals": outputs.totals.as_dict(),
    }


def _run_images(predictor, images: list[InputFile], opts, outputs, colors, skipped) -> int:
    """Decode ahead (background thread) -> predict (batched: ``predictor.batch_size`` per
    forward pass, or auto, measured on the first images) -> draw and write behind (background
    thread); returns the number of images processed."""
    out = Path(opts.output_dir)
    by_path = {f.path: f for f in images}
    done = 0
    if not images:
        return 0

    def decoded(bar):
        for f, (image, error) in prefetch(images, lambda f: read_image(f.path)):
            if image is None:
                bar.update(1)
                logger.warning("skipped %s: %s", f.path, error)
                skipped.append({"path": f.path, "reason": error})
                continue
            yield f.path, None, image

    with BackgroundWriter() as writer, tqdm(total=len(images), desc="images", unit="img") as bar:
        for image, pred in predictor.predict_stream(decoded(bar)):
            f = by_path[pred.source]
            outputs.add(pred, f.group, opts.um_per_px, image)
            done += 1
            bar.update(1)
            if opts.overlays:
                target = str((out / "overlays" / f.relpath).with_suffix(opts.overlay_ext))
                writer.submit(_write_overlay, target, image, pred, colors)
            if opts.labelme:
                writer.submit(export_labelme, pred, out / "labelme" / f.relpath, image_src=f.path)
    return done


def _write_overlay(target: str, image, pred, colors) -> None:
    write_image(target, draw_prediction(image, pred, colors))


def _run_video(predictor, f: InputFile, opts, outputs, colors, skipped, incomplete) -> int:
    """Stream one video; returns the number of frames processed (0 = skipped). A video that
    ends before the frame count its header gives (truncated), or whose frame size changes
    mid-stream (read up to there), is warned about and listed in ``incomplete`` with the frames
    read."""
    out = Path(opts.output_dir)
    try:
        info = video_info(f.path)
    except ValueError as e:
        logger.warning("skipped %s: %s", f.path, e)
        skipped.append({"path": f.path, "reason": str(e)})
        return 0
    stem = Path(f.relpath).with_suffix("")
    target = out / "videos" / f"{stem}_annotated{opts.video_ext}"
    total = -(-info["frames"] // opts.frame_stride) if info["frames"] > 0 else None
    n = 0
    frames = VideoFrames(f.path, opts.frame_stride)
    with VideoSink(target, info["fps"] / opts.frame_stride) as sink:
        with (
            BackgroundWriter() as writer,
            tqdm(total=total, desc=Path(f.path).name, unit="frame") as bar,
        ):
            for image, pred in predict_video(predictor, frames):
                outputs.add(pred, f.group, opts.um_per_px, image, video=f.relpath)
                caption = f"frame {pred.frame}  heads {len(pred)}"
                writer.submit(
                    lambda im, p, c: sink.write(draw_prediction(im, p, colors, caption=c)),
                    image,
                    pred,
                    caption,
                )
                if opts.labelme:
                    frame_png = out / "labelme" / stem / f"frame_{pred.frame:06d}.png"
                    writer.submit(export_labelme, pred, frame_png, image=image)
                n += 1
                bar.update(1)
    reason = None
    if frames.size_change:
        reason = (
            f"frame size changes mid-stream ({frames.size_change}): the {n} frames before it "
            "were graded, the rest not (one pixel scale per video; split the video there)"
        )
    elif 0 < frames.frames_read < info["frames"]:
        reason = (
            f"video ends early: {frames.frames_read} of the {info['frames']} frames its header "
            "gives were read (truncated or corrupt file?)"
        )
    if reason:
        logger.warning("%s: %s", f.path, reason)
        incomplete.append(
            {
                "path": f.path,
                "reason": reason,
                "frames_read": frames.frames_read,
                "frames_expected": info["frames"],
            }
        )
    return n
