"""Full-field inference benchmark (issue 20; not a test). Every ratio is measured in the same run.

(a) seconds per field of ``tools/infer.py``'s job (decode -> predict -> overlays, CSV, JSONL and
    the end-of-run report) vs the same model's bare forward on the same fields (decoded
    beforehand), one field per pass on both sides, runs alternated, best of ``--repeats``;
    target: the job within 2x the forward;
(b) peak RSS of infer.py's job in fresh processes on a short and a long folder of fields (the
    same fields copied N times): memory must not grow with the number of fields;
(c) with ``--parts RUN [RUN]``: infer.py's job with the part segmenter(s) and the WHO criteria
    (``infer.py --parts``: a field and/or a head segmenter) vs without, alternated, best of
    ``--repeats``; target: at most +30 % per field. Twice: with the end-of-run report (whose
    criteria plots are a fixed cost per run, spread over only ``--num-fields`` fields here) and
    without it (``--no-report``: the cost per field that a long run sees).
(d) with ``--tta MODE``: infer.py's job with the detector's flip test-time augmentation
    (``SPERM.INFER_TTA MODE``) vs without, alternated, best of ``--repeats``.

The fields come from ``--fields`` (a folder of images, e.g. the Sperm Parsing JPGs; labelme files
beside them are ignored) or ``$SPERM_D2_REAL_DATA/sperm_parsing``; they are copied into a
temporary folder (never written to where they are).

Usage:
    python benchmarks/bench_fields.py --run output/real_data/sperm_parsing/split/train \
        --fields ../shared/data/sperm_parsing --num-fields 12 --rss-fields 10 60 \
        [--parts output/real_data/sperm_parsing/parts/head_train] [--tta hflip]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
from bench_infer import bare_forward, overhead, spread, timed_inference  # the same measures

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.image_io import IMAGE_EXTS
from sperm_d2.inference import InferOptions, SpermPredictor, run_inference


def copy_fields(src: Path, dst: Path, n: int) -> list[Path]:
    """The first field images of ``src`` (sorted), cycled until there are ``n``, copied to
    ``dst`` under distinct names."""
    found = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not found:
        raise SystemExit(f"bench_fields.py: error: {src}: no images")
    dst.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = found[i % len(found)]
        paths.append(dst / f"{i:04d}_{p.name}")
        shutil.copyfile(p, paths[-1])
    return paths


def rss_child(run: str, folder: str, out: str) -> None:
    """In a fresh process: infer.py's job on ``folder``; print fields/s and peak RSS as JSON."""
    predictor = SpermPredictor.load(run, batch_size=1)
    start = time.perf_counter()
    summary = run_inference(predictor, [folder], InferOptions(Path(out)))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = summary["images_processed"]
    print(json.dumps({"fields": n, "s_per_field": seconds / n, "peak_rss_mb": peak_mb}))


def main(args: argparse.Namespace) -> None:
    if args.rss_child:
        return rss_child(*args.rss_child)
    src = Path(args.fields or Path(os.environ.get("SPERM_D2_REAL_DATA", "")) / "sperm_parsing")
    with tempfile.TemporaryDirectory(prefix="bench_fields_") as tmp:
        work = Path(tmp)
        paths = copy_fields(src, work / "fields", args.num_fields)
        images = [cv2.imread(str(p)) for p in paths]
        predictor = SpermPredictor.load(args.run, batch_size=1)
        h, w = images[0].shape[:2]
        print(
            f"fields: {len(paths)} of {w}x{h} px from {src}, run {args.run}, test size "
            f"{predictor.cfg.INPUT.MIN_SIZE_TEST}/{predictor.cfg.INPUT.MAX_SIZE_TEST}, torch "
            f"threads {torch.get_num_threads()}, one field per pass",
            flush=True,
        )
        predictor(images[0])  # warm-up
        times: dict[str, list[float]] = {"forward": [], "job": []}
        for r in range(args.repeats):
            order = ("forward", "job") if r % 2 == 0 else ("job", "forward")
            for kind in order:
                if kind == "forward":
                    times[kind].append(bare_forward(predictor, images, 1))
                else:
                    times[kind].append(timed_inference(predictor, work / "fields", work / f"j{r}"))
        n = len(paths)
        fwd, job = min(times["forward"]), min(times["job"])
        heads = len((work / "j0" / "instances.csv").read_text().splitlines()) - 1
        print(
            f"(a) bare forward {fwd / n:.2f} s/field, infer.py job {job / n:.2f} s/field "
            f"({heads / n:.1f} heads per field; best of {args.repeats}, spread "
            f"{100 * spread(times['job']):.1f} %): job / forward = {job / fwd:.2f}x (median over "
            f"repeats {1 + overhead(times['job'], times['forward']):.2f}x; target <= 2x)",
            flush=True,
        )
        if args.parts:
            parsed = SpermPredictor.load(args.run, batch_size=1, parts_run=args.parts)
            for report in (True, False):
                line = job_overhead(
                    predictor, parsed, "--parts", args, work / "fields", work, report
                )
                print(
                    f"(c) {line}, {'with' if report else 'without'} the end-of-run report; "
                    "target <= +30 %",
                    flush=True,
                )
        if args.tta:
            opts = ["SPERM.INFER_TTA", args.tta]
            tta = SpermPredictor.load(args.run, batch_size=1, opts=opts)
            line = job_overhead(predictor, tta, f"TTA {args.tta}", args, work / "fields", work)
            print(f"(d) {line}", flush=True)
        for count in args.rss_fields:
            folder = work / f"rss_{count}"
            copy_fields(src, folder, count)
            cmd = [
                sys.executable,
                __file__,
                "--run",
                args.run,
                "--rss-child",
                args.run,
                str(folder),
            ]
            cmd.append(str(work / f"rss_out_{count}"))
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"(b) {r['fields']:4d} fields: {r['s_per_field']:.2f} s/field, peak RSS "
                f"{r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            shutil.rmtree(folder)


def job_overhead(
    plain: SpermPredictor,
    variant: SpermPredictor,
    label: str,
    args,
    folder: Path,
    work: Path,
    report: bool = True,
) -> str:
    """infer.py's job with ``variant`` vs ``plain`` on the same fields, alternated, best of
    ``--repeats``: the seconds per field of both and the variant's extra time (``report``
    False: both without the end-of-run report)."""
    times: dict[str, list[float]] = {"plain": [], "variant": []}
    for r in range(args.repeats):
        order = (("plain", plain), ("variant", variant))
        for name, predictor in order if r % 2 == 0 else order[::-1]:
            out = work / f"{label}_{name}_{r}_{report}"
            times[name].append(timed_inference(predictor, folder, out, report))
    plain_s, variant_s = min(times["plain"]), min(times["variant"])
    n = len(list(folder.iterdir()))
    return (
        f"infer.py job without {label} {plain_s / n:.2f} s/field, with {label} "
        f"{variant_s / n:.2f} s/field: +{100 * (variant_s / plain_s - 1):.1f} % (best of "
        f"{args.repeats})"
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", required=True, help="trained full-field detector run folder")
    p.add_argument("--fields", default=None, help="folder of field images")
    p.add_argument("--num-fields", type=int, default=12, help="(a): fields timed")
    p.add_argument(
        "--rss-fields", type=int, nargs="*", default=[10, 60], help="(b): folder sizes (none: skip)"
    )
    p.add_argument("--repeats", type=int, default=2, help="(a): runs of each, best kept")
    p.add_argument("--parts", nargs="+", default=None, help="(c): part segmenter run folder(s)")
    p.add_argument(
        "--tta", default=None, help="(d): the detector's SPERM.INFER_TTA views (e.g. hflip)"
    )
    p.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
