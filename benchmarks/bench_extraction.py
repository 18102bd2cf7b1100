"""Benchmark: feature extraction (decoder processes + batched backbone) vs a naive loop, decode alone, model alone.

On the same clips (default: all of ../shared/data/surv-fight-dev) it measures

* **ours**: ``extract_features`` into a fresh temporary cache (nothing cached), default workers;
* **naive**: a plain loop in this process: per clip ``cv2.VideoCapture``, per sampled frame a seek
  (``CAP_PROP_POS_FRAMES``) + ``read``, resize (INTER_AREA) + BGR->RGB, and one backbone call per
  frame (batch of 1; the encoder is built once, before the clock starts);
* **decode_only**: our decoder processes (``decoded_clips``) over the same jobs, no model;
* **model_only**: the same encoder fed the frames decode_only produced (held in memory, all clips:
  177 x 20 x 224x224x3 uint8 = 530 MB) through the same fixed-size ``FeatureBatcher``;

and the CPU seconds each part burns (``getrusage``: this process and its reaped decoder processes),
from which ``floor_wall_s = (decode CPU + model CPU) / cores`` says how fast any schedule of the same
work could be on this machine. A second part writes two synthetic 1920x1080 clips (2 s and 10 min,
cached beside the report) and extracts each in a fresh process with ``workers=0`` to compare peak RSS.
Targets (issue: 2 cores, mobilenet_v1_tflite, 20 frames per clip): ours >= 5x faster than naive;
ours' wall <= 1.2x max(decode alone, model alone); peak RSS of the 10-minute clip <= 1.1x that of
the 2-second one. Benchmarks are not tests: nothing here asserts on a time.

A **views** part extracts the same clips once more per stream view (``--views``, default identity,
motion_crop, motion_image, motion_image_crop and tiles; each into a fresh cache, same workers): clips/s
with and without each view, and how often the motion views found no motion (``motion_fallback_frames``) or
compared with the neighbouring sampled frame because the next decoded frame repeated the sampled one
(``motion_neighbour_frames``). ``--views-only`` runs just that part (a report with ``views`` and no
naive/decode/model/RSS parts); ``--keep-features DIR`` keeps its caches there (for a probe on them).

Run it with ``make bench`` or::

    python -m benchmarks.bench_extraction --out outputs/bench/extraction.json
    python -m benchmarks.bench_extraction --views-only --clips 20 --frames 16 --out outputs/bench/views.json
    python -m benchmarks.bench_extraction --views-only --frames 16 --views identity,motion_crop,motion_image_crop \
        --keep-features outputs/bench/features --out outputs/bench/views.json
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
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.bench_common import check_int, load_average, run_cli
from nexara_lib.io import atomic_path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "surv-fight-dev"  # the real clips (README)
TARGET_SPEEDUP = 5.0  # ours must be at least this many times faster than the naive loop
TARGET_OVERLAP = 1.2  # ours' wall may be at most this multiple of max(decode alone, model alone)
# Peak RSS of the long clip's extraction process may be at most this multiple of the short clip's.
# Both processes hold the same interpreter, libraries and model (~200-300 MB with the TFLite backbone),
# so 10 % is tens of MB of slack: far less than one second of raw 1080p frames (25 x 6 MB = 150 MB).
TARGET_RSS_RATIO = 1.1
SYNTHETIC_SIZE = (1920, 1080)  # (width, height) of the two synthetic clips
SHORT_CLIP = (2.0, 25)  # (seconds, fps) of the short synthetic clip: 50 frames
LONG_CLIP = (600.0, 5)  # 10 minutes at a low frame rate (3000 frames) keeps writing ~30 s and ~200 MB
QUICK_LONG_CLIP = (20.0, 5)  # --quick: a 20-second long clip (100 frames)
QUICK_CLIPS = 4  # --quick without --clips: this many real clips
RUN_ORDER = ("decode_only", "model_only", "ours", "naive")  # within each repeat
VIEWS = ("identity", "motion_crop", "motion_image", "motion_image_crop", "tiles")  # the clean stream, then each view
MOTION_RECORDS = ("motion_fallback_frames", "motion_neighbour_frames")  # summed over clips for the motion views
_RSS_RESULT_PREFIX = "RSS_RESULT "  # the line a measuring child prints its result on


# --------------------------------------------------------------------------- clips


def select_clips(data_dir: str | Path, n_clips: int = 0) -> tuple[pd.DataFrame, list[dict]]:
    """The benchmark's clip list: labelled clips of ``data_dir``, probed (untimed) for their frame count.

    Args:
        data_dir: a dataset folder in a layout ``audit.discover_clips`` knows (e.g. fight/, noFight/).
        n_clips: 0 = all clips; else this many, evenly spread over the sorted list (deterministic).
    Returns:
        (manifest with clip_id, path, rel_path, label, frames, width, height, fps; unusable clips
        as [{path, reason}] left out of it).
    """
    from nexara_lib.audit.discover import discover_clips, make_clip_id
    from nexara_lib.video.probe import probe_video

    check_int("clips", n_clips, 0)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(
            f"data folder {str(data_dir)!r} does not exist; pass --data with a folder of clips "
            "(e.g. ../shared/data/surv-fight-dev)"
        )
    found = discover_clips(data_dir)
    if n_clips and n_clips < len(found):
        keep = np.unique(np.rint(np.linspace(0, len(found) - 1, n_clips)).astype(int))
        found = found.iloc[keep].reset_index(drop=True)
    rows, unusable = [], []
    for _, clip in found.iterrows():
        probe = probe_video(clip["path"])
        if probe["status"] != "ok":
            unusable.append({"path": clip["path"], "reason": probe["reason"]})
            continue
        rows.append(
            {
                "clip_id": make_clip_id(clip["source"], clip["rel_path"]),
                "path": clip["path"],
                "rel_path": clip["rel_path"],
                "label": int(clip["label"]),
                "frames": int(probe["frames"]),
                "width": int(probe["width"]),
                "height": int(probe["height"]),
                "fps": float(probe["fps"]),
            }
        )
    if not rows:
        raise ValueError(f"no usable clip in {str(data_dir)!r}: {unusable[:3]}")
    return pd.DataFrame(rows), unusable


def write_synthetic_clip(path: str | Path, seconds: float, fps: int, size: tuple[int, int] = SYNTHETIC_SIZE) -> Path:
    """Write an MPEG-4 (mp4v) clip whose every frame differs: a rolling smooth noise field + its frame number.

    Written to a temporary name and renamed, so an interrupted write never leaves a clip that looks reusable.
    """
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    n_frames = int(round(seconds * fps))
    rng = np.random.default_rng(0)
    # Noise at 1/8 resolution, upscaled: textured (the codec has work on every frame) yet compressible.
    coarse = rng.integers(0, 256, (max(1, height // 8), max(1, 2 * width // 8), 3), dtype=np.uint8)
    field = cv2.resize(coarse, (2 * width, height), interpolation=cv2.INTER_LINEAR)
    with atomic_path(path, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write an mp4v clip to {tmp}")
        try:
            for i in range(n_frames):
                shift = (i * 16) % width
                frame = np.ascontiguousarray(field[:, shift : shift + width])
                cv2.putText(
                    frame,
                    f"frame {i}",
                    (width // 20, height // 5),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    height / 270,
                    (255, 255, 255),
                    max(1, height // 135),
                )
                writer.write(frame)
        finally:
            writer.release()
    return path


def synthetic_clip(clip_dir: str | Path, seconds: float, fps: int, size: tuple[int, int] = SYNTHETIC_SIZE) -> dict:
    """The cached synthetic clip of this length, written first when missing or not as expected.

    Returns:
        {path, seconds, fps, width, height, frames (verified), bytes, reused, write_s}.
    """
    from nexara_lib.video.probe import probe_video

    width, height = size
    path = Path(clip_dir) / f"synthetic-{width}x{height}-{fps}fps-{seconds:g}s.mp4"
    n_frames = int(round(seconds * fps))
    probe = probe_video(path) if path.exists() else None
    reused = bool(
        probe
        and probe["status"] == "ok"
        and probe["frames"] == n_frames
        and (probe["width"], probe["height"]) == (width, height)
    )
    write_s = 0.0
    if not reused:
        t0 = time.perf_counter()
        write_synthetic_clip(path, seconds, fps, size)
        write_s = time.perf_counter() - t0
        probe = probe_video(path)
        if probe["status"] != "ok" or probe["frames"] != n_frames:
            raise RuntimeError(f"the synthetic clip {path} does not read back as {n_frames} frames: {probe['reason']}")
    return {
        "path": str(path),
        "seconds": seconds,
        "fps": fps,
        "width": width,
        "height": height,
        "frames": int(probe["frames"]),
        "bytes": int(probe["bytes"]),
        "reused": reused,
        "write_s": round(write_s, 2),
    }


# --------------------------------------------------------------------------- measurements


def _cpu_seconds() -> tuple[float, float]:
    """(CPU seconds of this process, of its reaped children), user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _per_clip(count: int, frames_per_clip: int, wall: float) -> dict:
    return {
        "clips_per_s": count / wall if wall > 0 else None,
        "frames_per_s": count * frames_per_clip / wall if wall > 0 else None,
    }


def _run_ours(manifest, cfg: dict, stream=None, keep: str | Path | None = None) -> dict:
    """``extract_features`` of ``stream`` (default: the clean stream) into a fresh temporary cache (removed
    afterwards), or into ``keep`` (kept; the stream's folder there must not exist yet)."""
    import contextlib

    from nexara_lib.features.cache import read_clip_records
    from nexara_lib.features.extract import extract_features
    from nexara_lib.features.stream import FeatureStream

    stream = stream or FeatureStream(cfg["backbone"], cfg["weights"], cfg["frames"])
    if keep is not None and stream.cache_dir(keep).exists():
        raise ValueError(
            f"--keep-features {str(keep)!r} already holds {stream.key}: the benchmark times a fresh extraction; "
            "give an empty folder"
        )
    cpu0 = _cpu_seconds()
    place = tempfile.TemporaryDirectory(prefix="nexara-bench-extract-") if keep is None else None
    with place or contextlib.nullcontext(str(keep)) as cache_root:
        t0 = time.perf_counter()
        summary = extract_features(manifest, stream, cache_root, workers=cfg["workers"], progress=False)
        wall = time.perf_counter() - t0
        records = read_clip_records(summary["cache_dir"])
    cpu1 = _cpu_seconds()
    for name in MOTION_RECORDS:  # motion views: frames without motion, frames compared with their neighbour
        if name in records.columns:
            summary[name] = int(records[name].fillna(0).sum())
    summary = {k: v for k, v in summary.items() if k not in ("cache_dir",)}
    return {
        "wall_s": wall,
        **_per_clip(summary["computed"], cfg["frames"], wall),
        "decode_s": summary["decode_s"],
        "model_s": summary["model_s"],
        "wait_s": summary["wait_s"],
        "write_s": summary["write_s"],
        "computed": summary["computed"],
        "failed": len(summary["failed"]),
        "seeks": summary["seeks"],
        "padded": summary["padded"],
        "cpu_s": {"main": cpu1[0] - cpu0[0], "decoders": cpu1[1] - cpu0[1]},
        "summary": summary,
    }


def _read_naive(cap, index: int):
    """Seek to ``index`` and read it; None when the read fails."""
    import cv2

    cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
    ok, frame = cap.read()
    return frame if ok and frame is not None else None


def _run_naive(manifest, cfg: dict, encode) -> dict:
    """Per clip: open, per sampled frame seek + read + resize + RGB, one backbone call per frame."""
    import cv2

    from nexara_lib.features.clip_jobs import sampled_indices

    size, pairs = cfg["size"], cfg["pairs"]

    def prepare(frame):
        return cv2.cvtColor(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)

    decode_s = model_s = 0.0
    failed_reads = calls = 0
    cpu0 = _cpu_seconds()
    wall0 = time.perf_counter()
    for _, row in manifest.iterrows():
        t0 = time.perf_counter()
        cap = cv2.VideoCapture(str(row["path"]))
        decode_s += time.perf_counter() - t0
        previous = np.zeros((2, size, size, 3) if pairs else (size, size, 3), np.uint8)
        try:
            for index in sampled_indices(int(row["frames"]), cfg["frames"], pairs):
                t0 = time.perf_counter()
                frame = _read_naive(cap, index)
                if frame is None:  # keep T model calls per clip: reuse the previous input, count the miss
                    failed_reads += 1
                    x = previous
                else:
                    x = prepare(frame)
                    if pairs:  # motion backbones: the frame right after it, read on (no second seek)
                        ok, following = cap.read()
                        x = np.stack([x, prepare(following if ok and following is not None else frame)])
                previous = x
                decode_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                encode(x[None])
                model_s += time.perf_counter() - t0
                calls += 1
        finally:
            cap.release()
    wall = time.perf_counter() - wall0
    cpu1 = _cpu_seconds()
    return {
        "wall_s": wall,
        **_per_clip(len(manifest), cfg["frames"], wall),
        "decode_s": decode_s,
        "model_s": model_s,
        "clips": len(manifest),
        "model_calls": calls,
        "failed_reads": failed_reads,
        "cpu_s": {"main": cpu1[0] - cpu0[0]},
    }


def _run_decode_only(jobs, cfg: dict, keep: dict | None) -> dict:
    """Our decoder processes over ``jobs``, frames dropped (or kept in ``keep`` by job name, for model_only)."""
    from nexara_lib.features.local_executor import decoded_clips

    queue_clips = max(2, 2 * -(-cfg["batch_frames"] // cfg["frames"]) + cfg["workers"])  # as local_results
    timer: dict = {}
    clips = failed = 0
    decode_s = 0.0
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    for answer in decoded_clips(jobs, cfg["workers"], queue_clips, timer):
        decode_s += answer.record.get("decode_s", 0.0)
        if answer.error is not None:
            failed += 1
            continue
        clips += 1
        if keep is not None:
            keep[answer.job.name] = answer.frames
    wall = time.perf_counter() - t0
    cpu1 = _cpu_seconds()
    return {
        "wall_s": wall,
        **_per_clip(clips, cfg["frames"], wall),
        "clips": clips,
        "failed": failed,
        "decode_s": decode_s,
        "wait_s": timer.get("wait_s", 0.0),
        "cpu_s": {"main": cpu1[0] - cpu0[0], "decoders": cpu1[1] - cpu0[1]},
    }


def _run_model_only(jobs, frames_by_name: dict, cfg: dict, encode) -> dict:
    """The encoder over pre-decoded frames, in job order, in batches of exactly ``batch_frames``."""
    from nexara_lib.features.local_executor import FeatureBatcher

    batcher = FeatureBatcher(encode, cfg["batch_frames"])
    clips = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for job in jobs:
        if job.name in frames_by_name:
            clips += len(batcher.add(job.name, frames_by_name[job.name]))
    clips += len(batcher.flush())
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    frames = sum(len(frames_by_name[job.name]) for job in jobs if job.name in frames_by_name)
    return {
        "wall_s": wall,
        **_per_clip(clips, cfg["frames"], wall),
        "clips": clips,
        "frames": frames,
        "model_s": batcher.model_s,
        "calls": batcher.calls,
        "batch_frames": cfg["batch_frames"],
        "scope": "all clips (frames decoded beforehand by decode_only, held in memory)",
        "cpu_s": {"main": cpu},
    }


def _memory_mb() -> dict:
    """This process's current and peak RSS in MB, from /proc/self/status (Linux) or getrusage."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError):
        pass
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    return {"rss_mb": out.get("VmRSS"), "peak_mb": out.get("VmHWM", lifetime), "lifetime_peak_mb": lifetime}


def _reset_peak_rss() -> bool:
    """Restart this process's peak-RSS counter (VmHWM) at its current RSS; False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _rss_child(spec_json: str) -> None:
    """Inside a fresh process: extract one clip with ``workers=0``, print RSS before and peak RSS during (MB).

    Imports are done and the peak counter is reset before extraction starts, so the peak is that of
    the extraction (start-up can peak higher than anything extraction does, which would hide it).
    """
    import gc

    from nexara_lib.features.cache import read_clip_records
    from nexara_lib.features.extract import extract_features
    from nexara_lib.features.stream import FeatureStream

    spec = json.loads(spec_json)
    manifest = pd.DataFrame([{"clip_id": "rss-probe", "path": spec["path"], "frames": spec["frames"]}])
    with tempfile.TemporaryDirectory(prefix="nexara-bench-rss-") as cache_root:
        gc.collect()
        reset = _reset_peak_rss()
        before = _memory_mb()
        t0 = time.perf_counter()
        summary = extract_features(
            manifest,
            FeatureStream(spec["backbone"], spec["weights"], spec["frames_per_clip"]),
            cache_root,
            workers=0,
            progress=False,
        )
        wall = time.perf_counter() - t0
        after = _memory_mb()
        records = read_clip_records(summary["cache_dir"]).to_dict("records")
    read = records[0] if records else {}
    peak = after["peak_mb"] if reset else after["lifetime_peak_mb"]
    print(
        _RSS_RESULT_PREFIX
        + json.dumps(
            {
                "peak_rss_mb": peak,
                "rss_before_extract_mb": before["rss_mb"],
                "extract_peak_increase_mb": peak - before["rss_mb"] if before["rss_mb"] is not None else None,
                "lifetime_peak_rss_mb": after["lifetime_peak_mb"],
                "peak_counter": "VmHWM reset just before extraction" if reset else "ru_maxrss of the whole process",
                "wall_s": wall,
                "computed": summary["computed"],
                "failed": [f["reason"] for f in summary["failed"]],
                "seeks": summary["seeks"],
                "read": {
                    k: read.get(k)
                    for k in ("strategy", "grabs", "seeks", "seek_fallbacks", "grab_ms", "seek_ms", "decode_s")
                },
            },
            default=float,
        ),
        flush=True,
    )


def measure_peak_rss(clip: dict, backbone: str, weights: str, frames_per_clip: int, timeout_s: float = 600) -> dict:
    """Peak RSS (MB) of a fresh Python process that extracts only ``clip`` (decoding in that process)."""
    spec = json.dumps(
        {
            "path": clip["path"],
            "frames": clip["frames"],
            "backbone": backbone,
            "weights": weights,
            "frames_per_clip": frames_per_clip,
        }
    )
    code = "import sys; from benchmarks.bench_extraction import _rss_child; _rss_child(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code, spec],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=str(PROJECT_ROOT),
        env=env,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(_RSS_RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"the RSS measuring process for {clip['path']} failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}"
        )
    return json.loads(lines[-1][len(_RSS_RESULT_PREFIX) :])


def _rss_part(clip_dir: Path, cfg: dict, long_clip: tuple[float, int]) -> dict:
    """Write (or reuse) the short and long synthetic clips and measure each one's extraction peak RSS."""
    out = {}
    for name, (seconds, fps) in (("short", SHORT_CLIP), ("long", long_clip)):
        clip = synthetic_clip(clip_dir, seconds, fps)
        out[name] = {"clip": clip, **measure_peak_rss(clip, cfg["backbone"], cfg["weights"], cfg["frames"])}
    short, long = out["short"]["peak_rss_mb"], out["long"]["peak_rss_mb"]
    out["ratio"] = long / short
    out["long_minus_short_mb"] = long - short
    out["method"] = (
        "a fresh `python -c` process per clip imports the library, resets its peak-RSS counter "
        "(/proc/self/clear_refs), runs extract_features(workers=0: decoding in that process) on that "
        "one clip and reports the peak RSS of the whole process during it (interpreter, libraries, "
        "model, decoding; ru_maxrss of its lifetime where the reset is not allowed: that one also "
        "counts the parent's RSS at fork, a Linux quirk, so it is only a fallback); clips are mp4v "
        "1920x1080, a rolling noise field with the frame number drawn; "
        f"short {SHORT_CLIP[0]:g} s at {SHORT_CLIP[1]} fps, long "
        f"{long_clip[0]:g} s at {long_clip[1]} fps (a low rate keeps writing time and disk sane)"
    )
    return out


# --------------------------------------------------------------------------- stream views


def check_views(views) -> tuple[str, ...]:
    """``views`` as a tuple of 'identity' and stream-view names (a comma-separated string is split)."""
    from nexara_lib.transforms.registry import available_transforms

    if isinstance(views, str):
        views = [v.strip() for v in views.split(",") if v.strip()]
    known = ["identity", *available_transforms(use="stream")]
    unknown = [v for v in views if v not in known]
    if unknown or len(set(views)) != len(views):
        raise ValueError(f"views must be distinct names among {known}, got {list(views)}")
    return tuple(views)


def _views_part(manifest, cfg: dict, views: tuple[str, ...], keep: str | Path | None = None) -> dict:
    """``extract_features`` once per view on the same clips, each into a fresh cache: clips/s and costs."""
    from nexara_lib.features.stream import FeatureStream

    base = FeatureStream(cfg["backbone"], cfg["weights"], cfg["frames"])
    out: dict = {}
    for view in views:
        stream = base if view == "identity" else base.with_view(view)
        run = _run_ours(manifest, cfg, stream, keep)
        summary = run["summary"]
        out[view] = {
            "key": stream.key,
            "regions": stream.regions,
            "encoded_frames_per_clip": cfg["frames"] * stream.regions,
            "wall_s": run["wall_s"],
            "clips_per_s": run["clips_per_s"],
            "computed": run["computed"],
            "failed": run["failed"],
            "decode_s": run["decode_s"],
            "model_s": run["model_s"],
            "wait_s": run["wait_s"],
            "cpu_s": run["cpu_s"],
            **{name: summary.get(name) for name in MOTION_RECORDS},
        }
    if "identity" in out:
        for view in views:
            if view != "identity" and out[view]["clips_per_s"] and out["identity"]["clips_per_s"]:
                out[view]["speed_vs_identity"] = out[view]["clips_per_s"] / out["identity"]["clips_per_s"]
    out["method"] = (
        "extract_features(workers, default batch size) per view on the same clips, each into a fresh "
        "temporary cache, one run each, in the order listed; stream views decode the sampled frames "
        "at native resolution and cut them in the decoder processes (the motion views also decode each "
        "sampled frame's next frame, in the same pass); tiles encode grid**2 frames per sampled frame"
    )
    return out


def _views_headline(views: dict) -> str:
    names = [v for v in views if v != "method"]
    return "views: " + ", ".join(
        f"{v} {views[v]['clips_per_s']:.2f} clips/s" for v in names if views[v]["clips_per_s"] is not None
    )


def _bench_setup(backbone: str, weights: str, frames: int, workers: int, clips: int, views) -> tuple:
    """Checked arguments: (the clean stream, the config every part records, the checked views)."""
    from nexara_lib.features.stream import FeatureStream

    check_int("frames", frames, 1)
    check_int("workers", workers, 1)
    check_int("clips", clips, 0)
    _check_backbone(backbone)
    views = check_views(views)
    stream = FeatureStream(backbone, weights, frames)
    cfg = {
        "backbone": backbone,
        "weights": weights,
        "frames": frames,
        "workers": workers,
        "size": stream.size,
        "pairs": stream.pairs,
        "batch_frames": stream.spec.batch_size,
    }
    return stream, cfg, views


def bench_views(
    out_path: str | Path,
    data_dir: str | Path = DEFAULT_DATA,
    clips: int = 0,
    backbone: str = "mobilenet_v1_tflite",
    weights: str = "imagenet",
    frames: int = 20,
    workers: int = 2,
    views=VIEWS,
    keep_features: str | Path | None = None,
) -> dict:
    """Only the views part: clips/s of the clean stream and each stream view on the same clips (JSON report);
    ``keep_features``: a folder that keeps the extracted caches (each stream's folder must not exist there)."""
    from nexara_lib.io import write_json_atomic

    stream, cfg, views = _bench_setup(backbone, weights, frames, workers, clips, views)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = load_average()
    total0 = time.perf_counter()
    manifest, unusable = select_clips(data_dir, clips)
    part = _views_part(manifest, cfg, views, keep_features)
    headline = _views_headline(part)
    report = {
        "benchmark": "feature_extraction_views",
        "headline": headline,
        "question": "clips/s of extract_features on the whole frame vs the stream views (motion_crop, tiles)",
        "started_at": started_at,
        "total_seconds": time.perf_counter() - total0,
        "machine": {**_machine(), "load_average_before": load_before, "load_average_after": load_average()},
        "data": {
            "dir": str(Path(data_dir).resolve()),
            "clips": len(manifest),
            "unusable": unusable,
            "selection": f"{clips} evenly spread over the sorted clip list" if clips else "all clips",
            "sizes": {f"{w}x{h}": int(n) for (w, h), n in manifest.groupby(["width", "height"]).size().items()},
            "rel_paths": manifest["rel_path"].tolist(),
        },
        "config": {**cfg, "views": list(views)},
        "views": part,
    }
    path = Path(out_path)
    write_json_atomic(path, report)
    print(f"extraction views bench: {headline} -> {path}", flush=True)
    return {**report, "path": str(path)}


# --------------------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> dict:
    """CPU, platform, versions and the git commit: what decides how fast extraction can be."""
    import cv2

    from nexara_lib.run.runinfo import git_info, package_versions

    versions = package_versions()
    try:
        versions["ai_edge_litert"] = metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        versions["ai_edge_litert"] = None
    versions["cv2"] = cv2.__version__
    return {
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "opencv_threads": cv2.getNumThreads(),
        "versions": versions,
        "git": git_info(PROJECT_ROOT),
    }


# --------------------------------------------------------------------------- the benchmark


def _best(runs: list[dict]) -> dict:
    """The least disturbed run (min wall) with every run's wall beside it."""
    best = min(runs, key=lambda r: r["wall_s"])
    return {**best, "all_runs_wall_s": [r["wall_s"] for r in runs]}


def _duration_text(seconds: float) -> str:
    """'10-min' or '2-s': a clip length for the headline."""
    return f"{seconds / 60:g}-min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}-s"


def _target(value: float | None, target: float, at_least: bool) -> dict:
    met = None if value is None else bool(value >= target if at_least else value <= target)
    return {"target": target, "rule": ">=" if at_least else "<=", "value": value, "met": met}


def _check_backbone(backbone: str) -> None:
    from nexara_lib.features.backbones import available_backbones

    if backbone not in available_backbones():
        raise ValueError(f"backbone {backbone!r} is not one of {available_backbones()}")


def bench_extraction(
    out_path: str | Path,
    data_dir: str | Path = DEFAULT_DATA,
    clips: int = 0,
    repeats: int = 1,
    backbone: str = "mobilenet_v1_tflite",
    weights: str = "imagenet",
    frames: int = 20,
    workers: int = 2,
    quick: bool = False,
    rss: bool = True,
    views=VIEWS,
) -> dict:
    """Time ours, naive, decode_only and model_only on the same clips; measure peak RSS vs clip length.

    Each repeat runs decode_only (keeping the frames), model_only (on those frames, then freed), ours
    and naive; each side's numbers are those of its fastest repeat (the least disturbed: CPUs may be
    shared). Encoders for naive and model_only are built before their clocks start; ours builds its
    own inside ``extract_features`` and that (small) cost, like decoder start-up, counts.

    Args:
        out_path: JSON file to write (folders are created; written atomically). The synthetic clips
            are cached in ``<out_path's folder>/clips/``.
        data_dir: folder of labelled clips (fight/, noFight/ ...).
        clips: 0 = all; else this many evenly spread (``quick`` without it: ``QUICK_CLIPS``).
        repeats: runs per side; the minimum wall time per side is reported.
        backbone, weights: the encoder (see ``backbones``).
        frames: T, frames per clip.
        workers: decoder processes for ours and decode_only (>= 1).
        quick: few clips and a 20-second long clip (for tests).
        rss: also run the peak-RSS part.
        views: 'identity' and stream views to time in the views part (after the repeats); () = none.
    Returns:
        The report that was written (also has ``"path"``).
    """
    check_int("repeats", repeats, 1)
    from nexara_lib.features.backbones import create_backbone
    from nexara_lib.features.extract import _jobs
    from nexara_lib.io import write_json_atomic

    stream, cfg, views = _bench_setup(backbone, weights, frames, workers, clips, views)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = load_average()
    total0 = time.perf_counter()
    n_clips = clips or (QUICK_CLIPS if quick else 0)
    t0 = time.perf_counter()
    manifest, unusable = select_clips(data_dir, n_clips)
    prepare_s = time.perf_counter() - t0
    jobs = _jobs(manifest, stream)
    t0 = time.perf_counter()
    naive_encode = create_backbone(backbone, weights, 0)
    model_encode = create_backbone(backbone, weights, 0)
    encoder_build_s = (time.perf_counter() - t0) / 2

    runs: dict[str, list[dict]] = {side: [] for side in RUN_ORDER}
    for _ in range(repeats):
        frames_by_name: dict = {}
        runs["decode_only"].append(_run_decode_only(jobs, cfg, frames_by_name))
        runs["model_only"].append(_run_model_only(jobs, frames_by_name, cfg, model_encode))
        del frames_by_name
        runs["ours"].append(_run_ours(manifest, cfg))
        runs["naive"].append(_run_naive(manifest, cfg, naive_encode))
    best = {side: _best(results) for side, results in runs.items()}
    views_part = _views_part(manifest, cfg, views) if views else None
    ours, naive, decode, model = (best[s] for s in ("ours", "naive", "decode_only", "model_only"))

    machine = _machine()
    cores = machine["cores"]
    decode_cpu = decode["cpu_s"]["decoders"] + decode["cpu_s"]["main"]
    model_cpu = model["cpu_s"]["main"]
    floor_wall = (decode_cpu + model_cpu) / cores
    slowest_alone = max(decode["wall_s"], model["wall_s"])
    speedup = naive["wall_s"] / ours["wall_s"]
    overlap = ours["wall_s"] / slowest_alone
    floor = {
        "decode_cpu_s": decode_cpu,
        "model_cpu_s": model_cpu,
        "cores": cores,
        "floor_wall_s": floor_wall,
        "floor_overlap_ratio": floor_wall / slowest_alone,  # the best overlap_ratio this CPU work allows
        "max_speedup_vs_naive": naive["wall_s"] / floor_wall,  # the best speedup this CPU work allows
        "ours_cpu_s": ours["cpu_s"]["main"] + ours["cpu_s"]["decoders"],
        "ours_cpu_utilisation": (ours["cpu_s"]["main"] + ours["cpu_s"]["decoders"]) / (ours["wall_s"] * cores),
        "how": "decode CPU = decode_only's decoder processes (getrusage RUSAGE_CHILDREN, reaped) + its "
        "consumer; model CPU = model_only's process CPU time (all interpreter threads); "
        "floor = their sum / cores: no schedule of the same work can be faster on these cores",
    }

    rss_part = None
    if rss:
        rss_part = _rss_part(Path(out_path).parent / "clips", cfg, QUICK_LONG_CLIP if quick else LONG_CLIP)
    targets = {
        "speedup_vs_naive": _target(speedup, TARGET_SPEEDUP, at_least=True),
        "overlap_ratio": _target(overlap, TARGET_OVERLAP, at_least=False),
        "rss_ratio": _target(rss_part["ratio"] if rss_part else None, TARGET_RSS_RATIO, at_least=False),
    }
    targets["speedup_vs_naive"]["reachable_on_this_machine"] = bool(floor["max_speedup_vs_naive"] >= TARGET_SPEEDUP)
    targets["overlap_ratio"]["reachable_on_this_machine"] = bool(floor["floor_overlap_ratio"] <= TARGET_OVERLAP)

    def verdict(name: str) -> str:
        met = targets[name]["met"]
        return "met" if met else ("NOT met" if met is not None else "not measured")

    headline = (
        f"ours {ours['clips_per_s']:.2f} clips/s vs naive {naive['clips_per_s']:.2f} clips/s "
        f"({speedup:.1f}x, target >= {TARGET_SPEEDUP:g}: {verdict('speedup_vs_naive')}); "
        f"wall/max(decode {decode['wall_s']:.1f} s, model {model['wall_s']:.1f} s) = {overlap:.2f} "
        f"(target <= {TARGET_OVERLAP:g}: {verdict('overlap_ratio')}; CPU floor allows "
        f"{floor['floor_overlap_ratio']:.2f})"
    )
    if rss_part:
        short, long = rss_part["short"], rss_part["long"]
        headline += (
            f"; peak RSS {_duration_text(long['clip']['seconds'])} 1080p {long['peak_rss_mb']:.0f} MB vs "
            f"{_duration_text(short['clip']['seconds'])} {short['peak_rss_mb']:.0f} MB "
            f"({rss_part['ratio']:.2f}x, target <= {TARGET_RSS_RATIO:g}: {verdict('rss_ratio')})"
        )

    if views_part:
        headline += "; " + _views_headline(views_part)

    report = {
        "benchmark": "feature_extraction",
        "question": "clips/s of extract_features vs a naive seek-per-frame, one-call-per-frame loop; how close "
        "its wall time is to the slower of decoding alone and the model alone; peak RSS vs clip length",
        "headline": headline,
        "targets": targets,
        "speedup_vs_naive": speedup,
        "overlap_ratio": overlap,
        "started_at": started_at,
        "total_seconds": time.perf_counter() - total0,
        "machine": {**machine, "load_average_before": load_before, "load_average_after": load_average()},
        "data": {
            "dir": str(Path(data_dir).resolve()),
            "clips": len(manifest),
            "selection": f"{n_clips} evenly spread over the sorted clip list" if n_clips else "all clips",
            "frames_in_clips": int(manifest["frames"].sum()),
            "sizes": {f"{w}x{h}": int(n) for (w, h), n in manifest.groupby(["width", "height"]).size().items()},
            "labels": {str(k): int(v) for k, v in manifest["label"].value_counts().sort_index().items()},
            "unusable": unusable,
            "rel_paths": manifest["rel_path"].tolist(),
            "prepare_s": prepare_s,
        },  # untimed: discovering and probing clips for their frame counts
        "config": {**cfg, "repeats": repeats, "quick": quick, "encoder_build_s": encoder_build_s},
        "method": {
            "run_order": f"each repeat: {' then '.join(RUN_ORDER)}",
            "repeats": repeats,
            "aggregate_over_repeats": "per side, the run with the minimum wall time (the least disturbed)",
            "ours": "extract_features(workers, default batch size) into a fresh temporary cache; wall = the call",
            "naive": "one process, plain loop: cv2.VideoCapture per clip, per sampled frame cap.set(POS_FRAMES) + "
            "read + resize INTER_AREA + BGR->RGB, one backbone call per frame (batch 1); encoder built "
            "before the clock",
            "decode_only": "decoded_clips(jobs, workers) (our decoder processes, same queue size as ours); frames "
            "kept in memory for model_only, nothing else done with them",
            "model_only": "FeatureBatcher(encoder, batch_frames) over decode_only's frames of all clips, in clip "
            "order (the same fixed batch shape as ours); encoder built before the clock",
            "frame_counts": "probed once before any timing (what the audit's manifest provides to ours)",
            "tflite_threads": "mobilenet_v1_tflite runs its interpreter with num_threads=2 on every side",
        },
        "ours": ours,
        "naive": naive,
        "decode_only": decode,
        "model_only": model,
        "floor": floor,
        "rss": rss_part,
        "views": views_part,
        "rss_tolerance": f"long-clip peak RSS <= {TARGET_RSS_RATIO:g} x short-clip peak RSS (whole process)",
    }
    path = Path(out_path)
    write_json_atomic(path, report)
    print(f"extraction bench: {headline} -> {path}", flush=True)
    return {**report, "path": str(path)}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m benchmarks.bench_extraction``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_extraction",
        description="Feature extraction speed and memory vs naive/decode/model (JSON).",
    )
    parser.add_argument("--out", default="outputs/bench/extraction.json", help="JSON report to write")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of labelled clips (fight/, noFight/)")
    parser.add_argument("--clips", type=int, default=0, help="0 = all clips; else this many, evenly spread")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side; the fastest is reported")
    parser.add_argument("--backbone", default="mobilenet_v1_tflite", help="frame encoder (registry name)")
    parser.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a weights file")
    parser.add_argument("--frames", type=int, default=20, help="T, frames per clip")
    parser.add_argument("--workers", type=int, default=2, help="decoder processes of ours and decode_only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_CLIPS} clips (unless --clips) and a {QUICK_LONG_CLIP[0]:g}-s long clip",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS part (synthetic 1080p clips)")
    parser.add_argument(
        "--views",
        default=",".join(VIEWS),
        help="comma-separated views timed in the views part ('identity' and stream views; '' = none)",
    )
    parser.add_argument(
        "--views-only", action="store_true", help="run only the views part (no naive/decode/model/RSS parts)"
    )
    parser.add_argument(
        "--keep-features", default=None, help="--views-only: keep the views' feature caches in this folder"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; 2 on a bad argument."""

    def run(args):
        if args.views_only:
            return bench_views(
                args.out,
                data_dir=args.data,
                clips=args.clips or (QUICK_CLIPS if args.quick else 0),
                backbone=args.backbone,
                weights=args.weights,
                frames=args.frames,
                workers=args.workers,
                views=args.views or VIEWS,
                keep_features=args.keep_features,
            )
        return bench_extraction(
            args.out,
            data_dir=args.data,
            clips=args.clips,
            repeats=args.repeats,
            backbone=args.backbone,
            weights=args.weights,
            frames=args.frames,
            workers=args.workers,
            quick=args.quick,
            rss=not args.no_rss,
            views=args.views,
        )

    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
