"""Command line: `nexara run | synth | audit | extract | export | detect | calibrate | feedback | params` (also
`python -m nexara_lib`)."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from nexara_lib.config import SCHEMA, ParamError, parse_override
from nexara_lib.run.field_cli import (
    add_field_commands,
    add_site_argument,
    calibration_lines,
    detect_site,
    evidence_line,
)


def _cmd_run(args) -> int:
    from nexara_lib.run.runner import NOTEBOOKS_DIR, NotebookFailed, run_pipeline

    overrides = dict(parse_override(item) for item in args.set or [])
    try:
        run_pipeline(
            args.file,
            overrides,
            notebooks=args.only.split(",") if args.only else None,
            run_dir=args.run_dir,
            force=args.force,
            notebooks_dir=args.notebooks_dir or NOTEBOOKS_DIR,
        )
    except NotebookFailed as err:
        print(f"nexara run failed: {err}", file=sys.stderr)
        return 1
    return 0


def _stop_on_sigterm():
    """SIGTERM (``kill``, a batch scheduler's time limit) stops a command like Ctrl-C: recorded, kernel shut down.

    Returns the previous handler (``main`` puts it back), or None outside the main thread (where Python
    cannot set one: the caller's own handling stays).
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


def _cmd_synth(args) -> int:
    from nexara_lib.video.synthetic import generate_synthetic_dataset

    listing = generate_synthetic_dataset(args.out, args.clips, seed=args.seed, progress=True)
    counts = listing.groupby(["split", "class_name"]).size()
    print(f"{len(listing)} clips in {args.out}\n{counts.to_string()}")
    return 0


def _cmd_audit(args) -> int:
    from nexara_lib.audit.manifest import build_manifest, write_audit

    for folder in args.data_dir:
        if not Path(folder).is_dir():
            raise ParamError(f"data folder {folder!r} does not exist")
    manifest, unusable, summary = build_manifest(
        [str(Path(d).resolve()) for d in args.data_dir],
        groups_csv=args.groups,
        fractions=tuple(args.fractions),
        seed=args.seed,
        workers=args.workers,
        max_clips=args.max_clips,
    )
    write_audit(manifest, unusable, summary, args.out)
    print(f"{len(manifest)} usable clips, {len(unusable)} unusable; manifest: {Path(args.out) / 'manifest.csv'}")
    return 0


def _cmd_extract(args) -> int:
    import pandas as pd

    from nexara_lib.features.backbones import use_pretrained_dir
    from nexara_lib.features.cache_migration import describe_legacy
    from nexara_lib.features.extract import extract_augmented_copies, extract_features
    from nexara_lib.features.stream import FeatureStream

    if not Path(args.manifest).is_file():
        raise ParamError(f"manifest {args.manifest!r} does not exist; write one with `nexara audit`")
    manifest = pd.read_csv(args.manifest, keep_default_na=False)
    if "status" in manifest.columns:
        manifest = manifest[manifest["status"] == "ok"]
    use_pretrained_dir(args.pretrained_dir)
    stream = FeatureStream(args.backbone, args.weights, args.frames_per_clip, args.image_size)
    options = dict(
        batch_size=args.batch_size,
        workers=args.workers,
        executor=args.executor,
        ray_address=args.ray_address,
        retry_failed=args.retry_failed,
    )
    summaries = [extract_features(manifest, stream.with_transform(args.transform), args.out, **options)]
    if args.augment_copies:
        rows = manifest[manifest["split"] == "train"] if "split" in manifest.columns else manifest
        summaries += extract_augmented_copies(
            rows, stream, args.out, copies=args.augment_copies, ops=args.augment_ops, seed=args.seed, **options
        )
    for summary in summaries:
        print(
            f"{summary['key']}: {summary['computed']} computed, {summary['cached_before']} already cached, "
            f"{len(summary['failed'])} failed; {summary['clips_per_s'] or 0:.2f} clips/s "
            f"(decode {summary['decode_s']:.1f} s over workers, model {summary['model_s']:.1f} s, "
            f"backbone waiting {summary['wait_s']:.1f} s, wall {summary['wall_s']:.1f} s) -> {summary['cache_dir']}"
        )
        for failure in summary["failed"]:
            print(f"  skipped {failure['path']}: {failure['reason']}")
        for bad in summary["bad_entries"]:
            kept = Path(summary["cache_dir"]) / bad["moved_to"]
            print(f"  recomputed {bad['file']}: {bad['reason']} (the bad file is kept as {kept})")
        if describe_legacy(summary):
            print(f"  {describe_legacy(summary)}")
    return 0


def _run_params(run_dir: str, sets) -> tuple:
    """A finished run's parameters (its ``params.yaml``) with ``--set`` overrides, and its layout."""
    from nexara_lib.layout import RunLayout
    from nexara_lib.run.params import resolve_params

    params_file = Path(run_dir) / "params.yaml"
    if not params_file.is_file():
        raise ParamError(
            f"{run_dir!r} is not a run folder (no params.yaml): give the folder `nexara run` wrote, e.g. outputs/demo"
        )
    overrides = dict(parse_override(item) for item in sets or [])
    return resolve_params([params_file], overrides), RunLayout(Path(run_dir).resolve())


def _cmd_export(args) -> int:
    from nexara_lib.stages.deploy import export_model

    params, layout = _run_params(args.run_dir, args.set)
    export = export_model(params, layout)
    sizes = ", ".join(f"{name} {v['bytes'] / 1024:.0f} kB" for name, v in export["variants"].items())
    print(
        f"exported {export['run']['model']} ({sizes}); on-threshold {export['threshold']['on']:.3f}; "
        f"window {export['window_s']:.1f} s -> {layout.export_dir}"
    )
    return 0


def _cmd_detect(args) -> int:
    from nexara_lib.deploy.detect import detect, expected_from_run
    from nexara_lib.stages.data import run_recipe

    params, layout = _run_params(args.run, args.set)
    recipe = run_recipe(params, layout)
    out = Path(args.out) if args.out else layout.run_dir / "detect"
    export_dir = args.export_dir or layout.export_dir
    result = detect(
        args.source,
        export_dir,
        params,
        out,
        site=detect_site(args.site, export_dir),
        grid=args.grid,
        variant=args.variant,
        fps=args.fps,
        window_s=args.window_s,
        realtime=args.realtime,
        annotate=args.annotate,
        expected=expected_from_run(recipe.params, recipe.streams.streams),
    )
    for source in result.summary["sources"]:
        cells = source["cells"]
        alerts = sum(c.get("alerts", 0) for c in cells)
        states = (
            ", ".join(f"{c['cell']}: {c['status']}" for c in cells)
            if len(cells) > 1
            else (cells[0]["status"] if cells else source["status"])
        )
        note = f" ({source['message']})" if source["message"] else ""
        print(f"{source['source']}: {source['duration_s']:.1f} s, {alerts} alert(s), {states}{note}")
    for line in [*calibration_lines(result.summary["calibration"]), evidence_line(result.summary["evidence"], out)]:
        if line:
            print(line)
    print(
        f"{result.summary['windows']} windows at {result.summary['realtime_factor'] or 0:.1f}x real time; "
        f"events: {result.events_path}"
    )
    return 0


def _cmd_params(args) -> int:
    from nexara_lib.io import write_text_atomic
    from nexara_lib.run.param_docs import parameters_page

    page = parameters_page()
    if args.out:
        write_text_atomic(args.out, page)
        print(f"parameter reference ({len(SCHEMA)} keys) -> {args.out}")
    else:
        print(page, end="")
    return 0


class _VersionAction(argparse.Action):
    """``--version``: computed when asked (it runs git), not each time the parser is built."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from nexara_lib.run.version import version_text

        print(version_text())
        parser.exit()


def _default(key: str):
    """Command-line defaults are the parameter schema's: one owner for every default."""
    return SCHEMA[key].default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexara", description="NexaraVision violence-detection experiments")
    parser.add_argument("--version", action=_VersionAction, help="print the package version and git commit, then exit")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="run every NN_*.ipynb notebook of notebooks/ in number order, headless, on layered parameters"
    )
    run.add_argument(
        "-f", "--file", action="append", required=True, help="parameter YAML (repeat: layered left to right)"
    )
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one parameter (value read as YAML)")
    run.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 01,02")
    run.add_argument("--run-dir", help="explicit run folder (default: <output_root>/<run_name>)")
    run.add_argument(
        "--notebooks-dir", help="folder of NN_*.ipynb notebooks to run (default: this checkout's notebooks/)"
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="run every notebook again, also those that finished with the same parameters and inputs",
    )
    run.set_defaults(func=_cmd_run)

    synth = sub.add_parser("synth", help="write the synthetic dataset (RWF-2000 layout)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--clips", type=int, default=200)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_cmd_synth)

    audit = sub.add_parser("audit", help="probe clips and write manifest.csv, unusable.csv, audit.json")
    audit.add_argument("data_dir", nargs="+")
    audit.add_argument("--groups", help="CSV clip,label,source_group: no group spans two splits")
    audit.add_argument("--out", required=True)
    audit.add_argument("--seed", type=int, default=_default("seed"))
    audit.add_argument("--workers", type=int, default=_default("probe_workers"))
    audit.add_argument("--max-clips", type=int, default=_default("max_clips"))
    audit.add_argument("--fractions", type=float, nargs=3, default=_default("split_fractions"))
    audit.set_defaults(func=_cmd_audit)

    extract = sub.add_parser("extract", help="cache per-clip feature sequences for a manifest")
    extract.add_argument("--manifest", required=True)
    extract.add_argument("--backbone", required=True)
    extract.add_argument("--weights", default=_default("backbone_weights"))
    extract.add_argument("--frames-per-clip", "--frames", type=int, default=_default("frames_per_clip"))
    extract.add_argument("--pretrained-dir", help="folder of offline pretrained files (the .tflite encoder)")
    extract.add_argument("--image-size", type=int, default=_default("image_size"))
    extract.add_argument("--out", required=True, help="cache root: one sub-folder per feature key")
    extract.add_argument(
        "--workers",
        type=int,
        default=_default("extract_workers"),
        help="decoder processes (0 = decode in this process)",
    )
    extract.add_argument("--executor", choices=SCHEMA["extract_executor"].choices, default=_default("extract_executor"))
    extract.add_argument("--ray-address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    extract.add_argument(
        "--batch-size",
        type=int,
        default=_default("extract_batch_size"),
        help="frames per backbone call (0 = the backbone's own)",
    )
    extract.add_argument("--transform", default="identity", help="a frame-level TTA view, e.g. hflip")
    extract.add_argument("--augment-copies", type=int, default=0, help="also N augmented copies of the train clips")
    extract.add_argument("--augment-ops", nargs="+", default=_default("frame_augment_ops"))
    extract.add_argument("--seed", type=int, default=_default("seed"), help="seed of the augmentation copies")
    extract.add_argument("--retry-failed", action="store_true", help="decode again clips that failed before")
    extract.set_defaults(func=_cmd_extract)

    export = sub.add_parser(
        "export", help="export a run's carried-forward model to SavedModel + TFLite with export.json"
    )
    export.add_argument("run_dir", help="a run folder written by `nexara run`")
    export.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a parameter, e.g. export_variants=[float32]"
    )
    export.set_defaults(func=_cmd_export)

    detect = sub.add_parser("detect", help="run a run's exported model on videos, folders, cameras or stream URLs")
    detect.add_argument("source", nargs="+", help="video file, folder of videos, camera index (0) or rtsp/http URL")
    detect.add_argument("--run", required=True, help="the run folder whose export to use")
    detect.add_argument("--grid", default="1x1", help="RxC: every picture shows R x C cameras (e.g. 2x2, 3x3)")
    detect.add_argument("--out", help="output folder (default: <run>/detect)")
    detect.add_argument("--variant", choices=SCHEMA["detect_head_variant"].choices, help="export variant to run")
    detect.add_argument("--export-dir", help="an export folder other than <run>/artifacts/export")
    detect.add_argument("--fps", type=float, help="frame rate of sources that do not say theirs")
    detect.add_argument("--window-s", type=float, help="window length in seconds (default: the export's)")
    detect.add_argument("--realtime", action="store_true", help="pace files at their frame rate, as a camera would")
    detect.add_argument("--annotate", action="store_true", help="also write each source as an annotated video")
    detect.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a detect_* parameter")
    add_site_argument(detect)
    detect.set_defaults(func=_cmd_detect)
    add_field_commands(sub, _run_params)

    params = sub.add_parser("params", help="print the parameter reference (Markdown: docs/parameters.md)")
    params.add_argument("--out", help="write it to this file instead, e.g. docs/parameters.md (make docs)")
    params.set_defaults(func=_cmd_params)
    return parser


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    return f"warning: {message}\n"  # users need the finding, not the library line that raised it


# Where a command's library messages go (OpenCV, FFmpeg, TensorFlow: see library_log): its output folder, or the
# run's logs/ (never a folder of clips that a later audit would scan: feedback's --out is a dataset).
_LIBRARY_LOG_FOLDER: dict[str, Callable[[argparse.Namespace], Path | None]] = {
    "audit": lambda args: Path(args.out),
    "extract": lambda args: Path(args.out),
    "export": lambda args: Path(args.run_dir) / "logs",
    "detect": lambda args: Path(args.out) if args.out else Path(args.run) / "detect",
    "calibrate": lambda args: Path(args.out) if args.out else Path(args.run) / "calibrate",
    "feedback": lambda args: Path(args.run) / "logs" if args.run else None,
}


def _run_command(args) -> int:
    """The command, its library messages in ``<output folder>/<command>.log`` (the terminal keeps ours)."""
    where = _LIBRARY_LOG_FOLDER.get(args.command)
    folder = where(args) if where else None
    if folder is None:
        return args.func(args)
    from nexara_lib.run.library_log import library_output

    with library_output(folder / f"{args.command}.log"):
        return args.func(args)


def main(argv=None) -> int:
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    previous = _stop_on_sigterm()
    try:
        return _run_command(args)
    except KeyboardInterrupt as err:  # the runner's RunInterrupted says where the partial notebook is
        print(f"nexara {args.command}: {str(err) or 'interrupted'}", file=sys.stderr)
        return 130
    except ParamError as err:
        print(f"parameter error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # e.g. a kernelspec pointing elsewhere
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
