"""Detector benchmark (``make bench``): how many grid cells keep up with a 25 fps mosaic in real time on
this machine with ``mobilenet_v1_tflite``, the lag behind live, head latency per export variant, and
peak memory over a long source against a short one. JSON out; nothing asserts on a time.

The mosaic is built from the real surveillance clips in ../shared/data/surv-fight-dev (each cell a
different clip, looped), the head is the run recipe's ``hybrid`` at surv_dev's size with its
normalization adapted on real clip features (random weights: latency and memory do not depend on
them). Long sources loop one short mosaic file with continuous timestamps (``LoopingCapture``),
so a one-hour source needs no hour of video on disk; every frame is still decoded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
T, WINDOW_S = 16, 5.0


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


def build_export(folder: Path) -> Path:
    """A surv_dev-sized hybrid head on mobilenet_v1_tflite features, exported in every variant."""
    import keras

    from nexara_lib.deploy.export import export_head
    from nexara_lib.features.stream import FeatureStream
    from nexara_lib.training.model_files import save_model_atomic
    from nexara_lib.training.models import adapt_input_normalization, create_sequence_model, model_defaults

    keras.utils.set_random_seed(0)
    stream = FeatureStream("mobilenet_v1_tflite", "imagenet", T)
    sizes = dict(dense_units=256, lstm_units=64, lstm_units_last=32, head_units=[64, 32])
    model = create_sequence_model("hybrid", (T, stream.feature_dim), **{**model_defaults("hybrid"), **sizes})
    adapt_input_normalization(
        model, np.random.default_rng(0).gamma(1.0, 0.5, (64, T, stream.feature_dim)).astype("float32")
    )
    save_model_atomic(model, folder / "model.keras")
    facts = {
        "run": {"name": "bench", "model": "hybrid", "stream_set": "identity"},
        "streams": [{**stream.describe(), "item": "identity"}],
        "window_s": WINDOW_S,
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


def detect_case(export: Path, mosaic: Path, grid: int, seconds: float, realtime: bool) -> dict:
    """One detector run on the mosaic looped for ``seconds`` (in this process)."""
    from nexara_lib.deploy.detect import detect

    sampler = RssSampler()
    with tempfile.TemporaryDirectory() as out:
        sampler.start()
        result = detect(
            [str(mosaic)],
            export,
            {"detect_cooldown_s": 30.0},
            out,
            grid=(grid, grid),
            realtime=realtime,
            opener=lambda uri: LoopingCapture(str(uri), seconds),
            figure=False,
        )
        sampler.stop.set()
        sampler.join()
    summary = result.summary
    return {
        "grid": f"{grid}x{grid}",
        "cells": grid * grid,
        "source_s": seconds,
        "realtime": realtime,
        "wall_s": round(summary["wall_s"], 2),
        "realtime_factor": round(summary["realtime_factor"] or 0, 3),
        "windows": summary["windows"],
        "backbone_frames": summary["backbone"]["frames"],
        "backbone_s": round(summary["backbone"]["seconds"], 2),
        "head_s": round(summary["head"]["seconds"], 3),
        "lag_s": summary["lag_s"],
        "behind_live_s": summary["behind_live_s"],
        "cpu_s": round(time.process_time(), 1),
        "process_peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_while_detecting": sampler.report(),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(case: dict) -> dict:
    """Run one case in a fresh process: peak memory is per process."""
    cmd = [sys.executable, "-m", "benchmarks.bench_detect", "--child", json.dumps(case)]
    done = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    if done.returncode != 0:
        raise ValueError(f"benchmark case {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args) -> None:
    if args.child:
        case = json.loads(args.child)
        os.environ.setdefault("NEXARA_PRETRAINED_DIR", str(REPO.parent / "shared" / "models"))
        print(
            json.dumps(
                detect_case(Path(case["export"]), Path(case["mosaic"]), case["grid"], case["seconds"], case["realtime"])
            )
        )
        return
    os.environ.setdefault("NEXARA_PRETRAINED_DIR", str(REPO.parent / "shared" / "models"))
    args.grids = sorted(set(args.grids) | {1, args.live_grid})  # the memory cases use 1x1, the live run its grid
    work = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    export = build_export(work)
    from nexara_lib.deploy.export import load_export
    from nexara_lib.deploy.parity import head_latency

    heads = {v: load_export(export, v)[0] for v in ("float32", "float16", "int8")}
    latency = head_latency(heads, batches=(1, 9), repeats=30)
    mosaics = {g: write_mosaic(work / f"mosaic-{g}x{g}.mp4", g, g, 20.0) for g in args.grids}
    throughput = [
        _child(
            {
                "export": str(export),
                "mosaic": str(mosaics[g]),
                "grid": g,
                "seconds": args.throughput_s,
                "realtime": False,
            }
        )
        for g in args.grids
    ]
    sustained = max([r["cells"] for r in throughput if r["realtime_factor"] >= 1.0] or [0])
    live = _child(
        {
            "export": str(export),
            "mosaic": str(mosaics[args.live_grid]),
            "grid": args.live_grid,
            "seconds": args.live_s,
            "realtime": True,
        }
    )
    short = _child(
        {"export": str(export), "mosaic": str(mosaics[1]), "grid": 1, "seconds": args.memory_short_s, "realtime": False}
    )
    long = _child(
        {"export": str(export), "mosaic": str(mosaics[1]), "grid": 1, "seconds": args.memory_long_s, "realtime": False}
    )
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": load_average()},
        "setup": {
            "backbone": "mobilenet_v1_tflite",
            "T": T,
            "window_s": WINDOW_S,
            "stride": 0.5,
            "fps": FPS,
            "cell_px": [320, 240],
        },
        "head_latency_ms": latency.to_dict("records"),
        "throughput": throughput,
        "cells_sustained_in_real_time": sustained,
        "live": live,
        "live_lag_under_1s": bool(live["behind_live_s"]["max"] is not None and live["behind_live_s"]["max"] < 1.0),
        "memory": {
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
    print(json.dumps({k: report[k] for k in ("cells_sustained_in_real_time", "live_lag_under_1s", "memory")}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/detect.json")
    parser.add_argument(
        "--grids", type=int, nargs="+", default=[1, 2, 3, 4], help="grid sides whose throughput is measured"
    )
    parser.add_argument("--throughput-s", type=float, default=60.0, help="source seconds per throughput case")
    parser.add_argument("--live-grid", type=int, default=3, help="grid side of the real-time (paced) run")
    parser.add_argument("--live-s", type=float, default=600.0, help="seconds of the paced run (10 minutes)")
    parser.add_argument("--memory-short-s", type=float, default=60.0)
    parser.add_argument("--memory-long-s", type=float, default=3600.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(run_cli(build_parser(), run))
