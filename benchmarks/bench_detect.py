"""Detector benchmark (``make bench``): how many grid cells keep up with a 25 fps mosaic in real time on
this machine with ``mobilenet_v1_tflite``, the lag behind live, head latency per export variant, and
peak memory over a long source against a short one. JSON out; nothing asserts on a time.

The mosaic is built from the real surveillance clips in ../shared/data/surv-fight-dev (each cell a
different clip, looped). The head is the recipe ``params/surv_dev.yaml`` carries forward: ``pooled_linear``
on the whole frame + the motion crop (``--streams``), T = 16, windows of surv_dev's W = 2 s (the median
duration of its training clips; ``--window-s``), its normalization adapted on random features (latency
and memory do not depend on the weights). Long sources loop one short mosaic file with continuous
timestamps (``LoopingCapture``), so a one-hour source needs no hour of video on disk; every frame is still
decoded. ``--before DIR`` also runs every unpaced case with the library of another checkout (e.g. the last
commit: ``git archive HEAD | tar -x -C DIR``) on the same export and mosaics: before and after in one run.
Every unpaced case runs with aligned windows (``detect_align_windows``, the default: the window and stride
snapped so that overlapping windows sample the same frames) and without (``--align``); the report gives the
window each used (length and stride in seconds and frames). The CPU floor says how many cells the backbone
alone allows: cores / (encoded frames per cell-second x the backbone's CPU seconds per frame, measured here),
with the frames the detector really encoded (shared products counted once) and the window plan's count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.bench_common import load_average, run_cli

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "surv-fight-dev"
FPS = 25.0
T, WINDOW_S, STRIDE = 16, 2.0, 0.5  # surv_dev: T = 16, W = the median training clip (2 s), stride W/2
STREAMS = ("identity", "motion_crop")  # what surv_dev's recipe selection carries forward
MODEL = "pooled_linear"
GRIDS = ("1x1", "2x2", "2x3", "3x3")


class LoopingCapture:
    """A cv2.VideoCapture look-alike that plays one file over and over for ``total_s`` seconds, timestamps
    continuing (a camera that never stops)."""

    def __init__(self, path: str, total_s: float):
        self.path, self.total_s = path, total_s
        self.cap = cv2.VideoCapture(path)
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or FPS
        self.index = 0

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return self.cap.isOpened()

    def read(self):
        if self.index / self.fps >= self.total_s:
            return False, None
        ok, frame = self.cap.read()
        if not ok:
            self.cap.release()
            self.cap = cv2.VideoCapture(self.path)
            ok, frame = self.cap.read()
        self.index += ok
        return ok, frame

    def get(self, prop):
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_POS_MSEC:
            return 1000.0 * (self.index - 1) / self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return self.total_s * self.fps
        return self.cap.get(prop)

    def release(self):
        self.cap.release()


def write_mosaic(out: Path, rows: int, cols: int, seconds: float, cell=(320, 240)) -> Path:
    """A ``rows`` x ``cols`` mosaic of real clips at 25 fps (each cell its own clip, looped)."""
    clips = sorted(CLIPS.glob("*/*.*"))
    if not clips:
        raise ValueError(f"no clips under {CLIPS}: the detector benchmark needs ../shared/data/surv-fight-dev")
    caps = [cv2.VideoCapture(str(clips[(k * 7) % len(clips)])) for k in range(rows * cols)]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (cell[0] * cols, cell[1] * rows))
    for _ in range(int(seconds * FPS)):
        picture = np.zeros((cell[1] * rows, cell[0] * cols, 3), np.uint8)
        for k, cap in enumerate(caps):
            ok, frame = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = cap.read()
            r, c = divmod(k, cols)
            picture[r * cell[1] : (r + 1) * cell[1], c * cell[0] : (c + 1) * cell[0]] = cv2.resize(frame, cell)
        writer.write(picture)
    writer.release()
    for cap in caps:
        cap.release()
    return out


def build_export(folder: Path, model_name: str = MODEL, items=STREAMS, window_s: float = WINDOW_S) -> Path:
    """A surv_dev-sized head (``model_name``) on mobilenet_v1_tflite features of the stream ``items``, exported
    in every variant."""
    import keras

    from nexara_lib.deploy.export import export_head
    from nexara_lib.features.stream_set import StreamSet
    from nexara_lib.training.model_files import save_model_atomic
    from nexara_lib.training.models import adapt_input_normalization, create_sequence_model, model_defaults

    keras.utils.set_random_seed(0)
    run = {"backbone": "mobilenet_v1_tflite", "backbone_weights": "imagenet", "frames_per_clip": T, "image_size": 0}
    streams = StreamSet.parse(list(items), run)
    sizes = (
        dict(dense_units=256, lstm_units=64, lstm_units_last=32, head_units=[64, 32]) if model_name == "hybrid" else {}
    )
    dim = streams.feature_dim
    model = create_sequence_model(model_name, (T, dim), **{**model_defaults(model_name), **sizes})
    adapt_input_normalization(model, np.random.default_rng(0).gamma(1.0, 0.5, (64, T, dim)).astype("float32"))
    save_model_atomic(model, folder / "model.keras")
    facts = {
        "run": {"name": "bench", "model": model_name, "stream_set": streams.name},
        "streams": [{**s.describe(), "item": item} for s, item in zip(streams.streams, streams.items, strict=True)],
        "window_s": window_s,
        "threshold": {
            "on": 0.5,
            "false_alarm_rate": 0.05,
            "validation_fpr": float("nan"),
            "validation_recall": float("nan"),
            "chosen_on": "benchmark (untrained)",
        },
    }
    export_head(folder / "model.keras", folder / "export", facts=facts)
    return folder / "export"


class RssSampler(threading.Thread):
    """Samples this process's resident memory every ``every`` seconds while the detector runs."""

    def __init__(self, every: float = 0.2):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self.stop.is_set():
            with open("/proc/self/statm") as f:
                self.samples.append(int(f.read().split()[1]) * page / 2**20)
            self.stop.wait(self.every)

    def report(self) -> dict:
        s = self.samples or [float("nan")]
        tenth = max(1, len(s) // 10)
        return {
            "peak_mb": round(max(s), 1),
            "first_tenth_peak_mb": round(max(s[:tenth]), 1),
            "last_tenth_peak_mb": round(max(s[-tenth:]), 1),
            "samples": len(s),
        }


def detect_case(
    export: Path,
    mosaic: Path,
    grid: tuple[int, int],
    seconds: float,
    realtime: bool,
    evidence: bool = False,
    align: bool | None = None,
) -> dict:
    """One detector run on the mosaic looped for ``seconds`` (in this process); alert evidence recorded only with
    ``evidence`` (a library without evidence recording runs without it either way); windows aligned or not by
    ``align`` (None, or a library without alignment: its default)."""
    import inspect

    from nexara_lib.config import SCHEMA
    from nexara_lib.deploy.detect import detect

    options = {"evidence": evidence} if "evidence" in inspect.signature(detect).parameters else {}
    params = {"detect_cooldown_s": 30.0, "detect_stride": STRIDE}
    if align is not None and "detect_align_windows" in SCHEMA:
        params["detect_align_windows"] = bool(align)
    rows, cols = int(grid[0]), int(grid[1])
    sampler = RssSampler()
    with tempfile.TemporaryDirectory() as out:
        sampler.start()
        cpu0 = time.process_time()
        result = detect(
            [str(mosaic)],
            export,
            params,
            out,
            grid=(rows, cols),
            realtime=realtime,
            opener=lambda uri: LoopingCapture(str(uri), seconds),
            figure=False,
            **options,
        )
        detect_cpu = time.process_time() - cpu0
        sampler.stop.set()
        sampler.join()
    summary = result.summary
    cells = rows * cols
    return {
        "grid": f"{rows}x{cols}",
        "cells": cells,
        "source_s": seconds,
        "realtime": realtime,
        "align_windows": summary["settings"].get("align_windows", False),
        "window": summary["sources"][0].get("window"),  # length and stride used (None: a library that says not)
        "wall_s": round(summary["wall_s"], 2),
        "realtime_factor": round(summary["realtime_factor"] or 0, 3),
        "windows": summary["windows"],
        "backbone_frames": summary["backbone"]["frames"],
        "backbone_frames_per_cell_second": round(summary["backbone"]["frames"] / (cells * seconds), 2),
        "backbone_s": round(summary["backbone"]["seconds"], 2),
        "head_s": round(summary["head"]["seconds"], 3),
        "lag_s": summary["lag_s"],
        "behind_live_s": summary["behind_live_s"],
        "detect_cpu_s": round(detect_cpu, 1),
        "cpu_s_per_cell_second": round(detect_cpu / (cells * seconds), 4),
        "cpu_s": round(time.process_time(), 1),
        "process_peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_while_detecting": sampler.report(),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(case: dict, library: str | Path | None = None) -> dict:
    """Run one case in a fresh process (peak memory is per process), with this checkout's library or, given
    ``library``, another checkout's (the benchmark script is this one either way)."""
    root = Path(library).resolve() if library is not None else REPO
    if not (root / "nexara_lib").is_dir():
        raise ValueError(f"--before {str(library)!r} holds no nexara_lib/: give a checkout of another commit")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(case)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(root)}
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise ValueError(f"benchmark case {case} ({root}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_grids(texts) -> list[tuple[int, int]]:
    """Grids written as RxC ("2x3"), as (rows, cols)."""
    from nexara_lib.deploy.grid import parse_grid

    return [parse_grid(t) for t in texts]


def backbone_cpu_per_frame(repeats: int = 6) -> float:
    """The backbone's CPU seconds per encoded frame, measured here (batches of 8 frames; its cost does not depend
    on the pixels)."""
    from nexara_lib.features.backbones import create_backbone

    encode = create_backbone("mobilenet_v1_tflite", "imagenet", 0)
    frames = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    encode(frames)
    cpu0 = time.process_time()
    for _ in range(repeats):
        encode(frames)
    return (time.process_time() - cpu0) / (repeats * len(frames))


def planned_rate(items, stride: float, window_s: float, align: bool) -> dict:
    """The window plan at FPS (``WindowPlan``, this checkout) and the frames it makes the backbone encode per
    cell-second: every stream's positions that no earlier window sampled, times its regions, over the stride (an
    upper bound: a still motion crop also reuses the whole frame's product)."""
    from nexara_lib.deploy.windows import WindowPlan
    from nexara_lib.features.stream_set import StreamSet

    run = {"backbone": "mobilenet_v1_tflite", "backbone_weights": "imagenet", "frames_per_clip": T, "image_size": 0}
    streams = StreamSet.parse(list(items), run).streams
    plan = WindowPlan.build(
        FPS, window_s, stride, T, [s.reads_next for s in streams], align=align, encodes=[s.regions for s in streams]
    )
    new = sum(
        s.regions * (len(set(offs)) - plan.shared_positions(i))
        for i, (s, offs) in enumerate(zip(streams, plan.offsets, strict=True))
    )
    return {"window": plan.describe(), "encoded_frames_per_cell_second": round(new / plan.stride_s, 2)}


def floor(rate: float, per_frame: float, cores: int) -> dict:
    """Cells the backbone alone lets ``cores`` keep up with at ``rate`` encoded frames per cell-second."""
    return {
        "encoded_frames_per_cell_second": round(rate, 2),
        "backbone_cpu_s_per_cell_second": round(rate * per_frame, 4),
        "cells_floor": round(cores / (rate * per_frame), 2),
    }


def measured_rate(cases: list[dict] | None) -> float | None:
    """Frames the detector really encoded per cell-second (shared products counted once), median over the grids."""
    return float(np.median([c["backbone_frames_per_cell_second"] for c in cases])) if cases else None


def floors(items, stride: float, window_s: float, sets: dict) -> dict:
    """The CPU floor with no sharing at all, and for every measured set of cases (aligned, unaligned, before):
    from the frames it really encoded, and (this checkout's sets) from its window plan."""
    per_frame, cores = backbone_cpu_per_frame(), os.cpu_count() or 1
    out: dict = {
        "backbone_cpu_ms_per_frame": round(1000 * per_frame, 2),
        "cores": cores,
        "how": "cores / (encoded frames per cell-second x backbone CPU per frame): the most cells the backbone "
        "alone lets a perfectly parallel schedule keep up with; decoding, cutting and the head come on top",
        "no_sharing": floor(len(items) * T / (stride * window_s), per_frame, cores),  # every stream's T per window
    }
    for name, cases in sets.items():
        rate = measured_rate(cases)
        if rate is None:
            continue
        entry = {"measured": floor(rate, per_frame, cores)}
        if name in ("aligned", "unaligned"):
            plan = planned_rate(items, stride, window_s, name == "aligned")
            entry["planned"] = {
                "window": plan["window"],
                **floor(plan["encoded_frames_per_cell_second"], per_frame, cores),
            }
        out[name] = entry
    return out


def sustained(cases: list[dict]) -> int:
    return max([r["cells"] for r in cases if r["realtime_factor"] >= 1.0] or [0])


def run(args) -> None:
    if args.child:
        case = json.loads(args.child)
        os.environ.setdefault("NEXARA_PRETRAINED_DIR", str(REPO.parent / "shared" / "models"))
        result = detect_case(
            Path(case["export"]),
            Path(case["mosaic"]),
            case["grid"],
            case["seconds"],
            case["realtime"],
            case["evidence"],
            case.get("align"),
        )
        print(json.dumps(result))
        return
    os.environ.setdefault("NEXARA_PRETRAINED_DIR", str(REPO.parent / "shared" / "models"))
    grids = parse_grids(args.grids)
    live_grid = parse_grids([args.live_grid])[0]
    work = Path(tempfile.mkdtemp(prefix="bench-detect-"))  # the export and mosaics, removed at the end
    try:
        _measure(args, grids, live_grid, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(args, grids: list[tuple[int, int]], live_grid: tuple[int, int], work: Path) -> None:
    """Every case of the benchmark, with the export and mosaics in ``work``; writes the report."""
    export = build_export(work, args.model, args.streams.split("+"), args.window_s)
    from nexara_lib.deploy.export import load_export
    from nexara_lib.deploy.parity import head_latency

    heads = {v: load_export(export, v)[0] for v in ("float32", "float16", "int8")}
    latency = head_latency(heads, batches=(1, 9), repeats=30)
    mosaics = {
        g: write_mosaic(work / f"mosaic-{g[0]}x{g[1]}.mp4", g[0], g[1], 20.0) for g in {*grids, live_grid, (1, 1)}
    }

    def case(grid, seconds, realtime, align=None):
        return {
            "export": str(export),
            "mosaic": str(mosaics[grid]),
            "grid": grid,
            "seconds": seconds,
            "realtime": realtime,
            "evidence": args.evidence,
            "align": align,
        }

    load_before = load_average()
    aligns = {"both": (True, False), "on": (True,), "off": (False,)}[args.align]
    sets: dict[str, list] = {"before": [], "unaligned": [], "aligned": []}
    for g in grids:  # each grid's cases one after another, so a change of load hits them alike
        if args.before:
            sets["before"].append(_child(case(g, args.throughput_s, False), args.before))
        for align in aligns:
            sets["aligned" if align else "unaligned"].append(_child(case(g, args.throughput_s, False, align)))
    live = _child(case(live_grid, args.live_s, True, aligns[0])) if args.live_s > 0 else None
    short = _child(case((1, 1), args.memory_short_s, False, aligns[0])) if args.memory_long_s > 0 else None
    long = _child(case((1, 1), args.memory_long_s, False, aligns[0])) if args.memory_long_s > 0 else None
    items = args.streams.split("+")
    throughput = sets["aligned"] or sets["unaligned"]
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "setup": {
            "backbone": "mobilenet_v1_tflite",
            "model": args.model,
            "streams": items,
            "T": T,
            "window_s": args.window_s,
            "stride": STRIDE,
            "fps": FPS,
            "cell_px": [320, 240],
            "throughput_source_s": args.throughput_s,
            "before": str(args.before) if args.before else None,
            "align_windows": args.align,
            "windows": {  # the window each set of cases used at FPS: length and stride, seconds and frames
                name: planned_rate(items, STRIDE, args.window_s, name == "aligned")["window"]
                for name in ("aligned", "unaligned")
                if sets[name]
            },
            "alert_evidence": "recorded" if args.evidence else "off (--evidence records it, as nexara detect does)",
        },
        "head_latency_ms": latency.to_dict("records"),
        "throughput": throughput,  # aligned windows (the default), else unaligned (--align off)
        "cells_sustained_in_real_time": sustained(throughput),
        "throughput_unaligned": sets["unaligned"] if sets["aligned"] else None,
        "cells_sustained_in_real_time_unaligned": sustained(sets["unaligned"]) if sets["unaligned"] else None,
        "throughput_before": sets["before"] or None,
        "cells_sustained_in_real_time_before": sustained(sets["before"]) if sets["before"] else None,
        "floor": floors(items, STRIDE, args.window_s, sets),
        "live": live,
        "live_lag_under_1s": bool(
            live and live["behind_live_s"]["max"] is not None and live["behind_live_s"]["max"] < 1.0
        ),
        "memory": None
        if long is None
        else {
            "short_source_s": args.memory_short_s,
            "long_source_s": args.memory_long_s,
            "short_peak_rss_mb": short["rss_while_detecting"]["peak_mb"],
            "long_peak_rss_mb": long["rss_while_detecting"]["peak_mb"],
            "long_over_short": round(
                long["rss_while_detecting"]["peak_mb"] / short["rss_while_detecting"]["peak_mb"], 3
            ),
            "long_first_vs_last_tenth_mb": [
                long["rss_while_detecting"]["first_tenth_peak_mb"],
                long["rss_while_detecting"]["last_tenth_peak_mb"],
            ],
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    keys = (
        "cells_sustained_in_real_time",
        "cells_sustained_in_real_time_unaligned",
        "cells_sustained_in_real_time_before",
        "floor",
        "live_lag_under_1s",
        "memory",
    )
    print(json.dumps({k: report[k] for k in keys}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/detect.json")
    parser.add_argument("--grids", nargs="+", default=list(GRIDS), help="grids (RxC) whose throughput is measured")
    parser.add_argument("--throughput-s", type=float, default=60.0, help="source seconds per throughput case")
    parser.add_argument("--live-grid", default="2x3", help="grid (RxC) of the real-time (paced) run")
    parser.add_argument("--live-s", type=float, default=600.0, help="seconds of the paced run (10 minutes; 0 = none)")
    parser.add_argument("--memory-short-s", type=float, default=60.0)
    parser.add_argument("--memory-long-s", type=float, default=3600.0, help="0 = no memory cases")
    parser.add_argument("--model", default=MODEL, help="the head's model (registry name)")
    parser.add_argument("--streams", default="+".join(STREAMS), help="the head's streams, '+'-joined")
    parser.add_argument("--window-s", type=float, default=WINDOW_S, help="window length W in seconds")
    parser.add_argument(
        "--before", default=None, help="a checkout of another commit: its library runs every unpaced case too"
    )
    parser.add_argument(
        "--align",
        choices=("both", "on", "off"),
        default="both",
        help="unpaced cases with aligned windows (detect_align_windows), without, or both; paced and memory cases "
        "take the first",
    )
    parser.add_argument("--evidence", action="store_true", help="record alert evidence (nexara detect's default)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(run_cli(build_parser(), run))
