"""The field loop on the command line: `nexara calibrate` and `nexara feedback`, and what `nexara detect`
says about calibration (SPEC.md "The field loop")."""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from nexara_lib.config import SCHEMA, ParamError


def detect_site(site_arg: str | None, export_dir: str | Path):
    """The site file ``nexara detect`` uses: ``--site PATH``, ``--site none``, else the export's own if it has one."""
    from nexara_lib.deploy.site import Site, default_site_path

    if site_arg is not None and site_arg.lower() == "none":
        return None
    path = Path(site_arg) if site_arg else default_site_path(export_dir)
    site = Site.load(path)
    if site is None and site_arg:
        raise ParamError(
            f"site file {site_arg!r} does not exist; write it with `nexara calibrate`, or pass --site none"
        )
    return site


def calibration_lines(calibration: Mapping) -> list[str]:
    """What ``nexara detect`` prints about its cameras' thresholds."""
    lines = []
    if calibration["calibrated"]:
        thresholds = ", ".join(f"{k} {v:.3f}" for k, v in calibration["calibrated"].items())
        lines.append(f"calibrated cameras (on-threshold): {thresholds}")
    if calibration["uncalibrated"]:
        lines.append(
            f"uncalibrated cameras (the export's on-threshold {calibration['export_on_threshold']:.3f}): "
            f"{', '.join(calibration['uncalibrated'])}; calibrate them with `nexara calibrate NAME=FOOTAGE --run RUN`"
        )
    return lines


def evidence_line(evidence: Mapping | None, out_dir: Path) -> str | None:
    if not evidence or not (evidence["alerts"] or evidence["frames_dropped"] or evidence["failed"]):
        return None
    line = f"alert evidence: {evidence['written']} of {evidence['alerts']} alert(s) -> {out_dir / 'evidence'}"
    losses = [
        f"{evidence[k]} {words}"
        for k, words in (
            ("frames_dropped", "frame(s) dropped (the writer fell behind)"),
            ("failed", "failure(s)"),
            ("deleted_for_cap", "older alert(s) deleted for the disk cap"),
        )
        if evidence.get(k)
    ]
    return line + (f"; {', '.join(losses)}" if losses else "")


def _cmd_calibrate(run_params: Callable, args) -> int:
    from nexara_lib.deploy.calibrate import calibrate
    from nexara_lib.deploy.detect import expected_from_run
    from nexara_lib.stages.data import run_recipe

    params, layout = run_params(args.run, args.set)
    recipe = run_recipe(params, layout)
    export_dir = Path(args.export_dir) if args.export_dir else layout.export_dir
    result = calibrate(
        args.source,
        export_dir,
        params,
        Path(args.out) if args.out else layout.run_dir / "calibrate",
        grid=args.grid,
        variant=args.variant,
        minutes=args.minutes,
        window_s=args.window_s,
        site_path=args.site,
        command=shlex.join(["nexara", *sys.argv[1:]]),
        expected=expected_from_run(recipe.params, recipe.streams.streams),
        fps=args.fps,
    )
    for key in result.calibrated:
        entry = result.site.cameras[key]
        print(
            f"{key}: on-threshold {entry['on_threshold']:.3f} (the export's {entry['export_on_threshold']:.3f}) from "
            f"{entry['windows']} windows over {entry['minutes']:.1f} minutes; {entry['share_above']:.1%} of its "
            f"normal windows reach it"
        )
    for message in result.too_little:
        print(f"not calibrated: {message}", file=sys.stderr)
    if result.calibrated:
        print(f"site file: {result.site.path} ({len(result.site.cameras)} camera(s))")
    return 2 if result.too_little else 0


def _cmd_feedback(run_params: Callable, args) -> int:
    from nexara_lib.deploy.feedback import import_feedback
    from nexara_lib.deploy.site import Site, default_site_path

    normal = args.normal_clips
    site_path = Path(args.site) if args.site else None
    if args.run:
        params, layout = run_params(args.run, args.set)
        normal = params["feedback_normal_clips"] if normal is None else normal
        site_path = site_path or default_site_path(layout.export_dir)
    site = Site.load(site_path) if site_path else None
    if args.site and site is None:
        raise ParamError(f"site file {args.site!r} does not exist; write it with `nexara calibrate`")
    reviews = None if args.reviews.lower() == "none" else args.reviews
    report = import_feedback(
        reviews, args.out, site=site, normal_clips=SCHEMA["feedback_normal_clips"].default if normal is None else normal
    )
    print(report.summary())
    for note in report.notes:
        print(f"  note: {note}")
    out = Path(args.out)
    print(
        f"train on it: data_dir: [<your dataset>, {out}] and groups_csv: [{out / 'groups.csv'}] "
        "(each camera's clips stay in one split)"
    )
    return 0


def add_field_commands(sub, run_params: Callable) -> None:
    """Add `calibrate` and `feedback` to the `nexara` sub-commands (``run_params``: the CLI's run loader)."""
    cal = sub.add_parser(
        "calibrate", help="set each camera's on-threshold from its normal footage (site.json beside the export)"
    )
    cal.add_argument("source", nargs="+", help="normal footage: NAME=file, NAME=folder, NAME=camera index or URL")
    cal.add_argument("--run", required=True, help="the run folder whose export to calibrate")
    cal.add_argument("--grid", default="1x1", help="RxC: every picture shows R x C cameras (each calibrated alone)")
    cal.add_argument(
        "--minutes", type=float, help="stop each camera after this much footage (live: default the minimum)"
    )
    cal.add_argument("--out", help="the calibration run's windows and timelines (default: <run>/calibrate)")
    cal.add_argument("--site", help="the site file (default: <export>/site.json)")
    cal.add_argument("--variant", choices=SCHEMA["detect_head_variant"].choices, help="export variant to calibrate")
    cal.add_argument("--export-dir", help="an export folder other than <run>/artifacts/export")
    cal.add_argument("--fps", type=float, help="frame rate of sources that do not say theirs")
    cal.add_argument("--window-s", type=float, help="window length in seconds (default: the export's)")
    cal.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter")
    cal.set_defaults(func=functools.partial(_cmd_calibrate, run_params))

    feed = sub.add_parser("feedback", help="turn reviewed alerts and calibration footage into training clips")
    feed.add_argument("reviews", help="the reviews file (notebook 09 writes <run>/reviews.jsonl); 'none': footage only")
    feed.add_argument("--out", required=True, help="the field dataset folder (created; imports are added)")
    feed.add_argument("--run", help="the run folder: its site file gives normal clips of the calibration footage")
    feed.add_argument("--site", help="a site file other than the run's <export>/site.json")
    feed.add_argument("--normal-clips", type=int, help="normal clips per camera (default: feedback_normal_clips)")
    feed.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter")
    feed.set_defaults(func=functools.partial(_cmd_feedback, run_params))


def add_site_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--site", help="the site file of calibrated cameras (default: <export>/site.json when it exists; 'none': off)"
    )
