"""Stage 2: sample T frames per clip, encode them with a frozen backbone, cache float16 sequences.

What is cached, and under which key, is a ``FeatureStream`` (``features.stream``); the files
themselves are written by ``features.cache``. Executors: ``local`` (decoder processes
feeding this process's backbone, ``features.local_executor``) and ``ray`` (clips spread over
a Ray cluster, ``features.ray_executor``); both write the same cache, so a run can switch
executors and resume. A rerun computes only the clips without a good cache entry: every existing
entry is checked first (checksum, shape, dtype; ``features.cache_entries``), and a bad one is moved
aside into ``<cache dir>/bad/``, computed again and listed under ``bad_entries`` in the summary.
Entries under the older, path-based cache names are carried over first (``features.cache_migration``)
and counted under ``legacy``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nexara_lib.features.backbones import create_backbone
from nexara_lib.features.cache import CacheWriter, check_entries, clip_cache_name
from nexara_lib.features.cache_migration import (
    legacy_clip_cache_name,
    migrate_legacy_entries,
    migrate_legacy_stream_dir,
)
from nexara_lib.features.clip_jobs import ClipJob, DecodedClip, check_job_transform
from nexara_lib.features.local_executor import FeatureBatcher, decoded_clips
from nexara_lib.features.stream import FeatureStream
from nexara_lib.io import write_json_atomic

EXECUTORS = ("local", "ray")


def _jobs(manifest: pd.DataFrame, stream: FeatureStream) -> list[ClipJob]:
    jobs = []
    for _, row in manifest.iterrows():
        frames = row.get("frames", 0)
        try:
            frames = int(frames) if frames not in ("", None) and not pd.isna(frames) else 0
        except (TypeError, ValueError):
            frames = 0
        jobs.append(
            ClipJob(
                clip_cache_name(row),
                str(row["clip_id"]),
                str(row["path"]),
                frames,
                stream.frames_per_clip,
                stream.size,
                stream.pairs,
                stream.transform,
                stream.augmentation,
                stream.view_params,
            )
        )
    return jobs


def _check_arguments(manifest, stream, workers, executor) -> None:
    missing = {"clip_id", "path"} - set(manifest.columns)
    if missing:
        raise ValueError(
            f"extract_features: the manifest lacks column(s) {sorted(missing)}; "
            "pass the manifest.csv written by the audit (notebook 01 or `nexara audit`)"
        )
    if not isinstance(stream, FeatureStream):
        raise TypeError(
            f"extract_features: stream must be a FeatureStream, got {type(stream).__name__}; "
            "build one with FeatureStream(backbone, weights, frames_per_clip) or FeatureStream.from_params"
        )
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(
            f"extract_features: workers must be an integer >= 0 (0 = decode in this process), got {workers!r}"
        )
    if executor not in EXECUTORS:
        raise ValueError(f"extract_features: executor {executor!r} is not one of {list(EXECUTORS)}")


def extract_features(
    manifest: pd.DataFrame,
    stream: FeatureStream,
    cache_root: str | Path,
    *,
    batch_size: int = 0,
    workers: int = 2,
    executor: str = "local",
    ray_address: str | None = None,
    mixed_precision: str = "auto",
    retry_failed: bool = False,
    progress: bool = True,
) -> dict:
    """Compute and cache ``stream``'s features for every manifest row not cached yet.

    Args:
        manifest: usable clips (columns clip_id, path; optional frames (verified count from the
            audit; 0 or missing = counted first), bytes, sha1).
        stream: what to compute (backbone, weights, T, frame size, frame transform or
            augmentation copy); its key names the cache folder.
        cache_root: folder holding one sub-folder per stream key.
        batch_size: frames per backbone call (0 = the backbone's own batch size).
        workers: decoder processes (0 = decode in this process); on Ray, parallel tasks.
        executor: 'local' or 'ray'.
        ray_address: Ray cluster to join (None: the RAY_ADDRESS environment variable, else a
            local instance).
        mixed_precision: 'auto' | 'on' | 'off' for Keras backbones (float16 only on GPU under auto).
        retry_failed: decode again clips recorded as failed by an earlier run (default: skip them
            and report them again).
        progress: show a progress bar.
    Returns:
        dict with cache_dir, key, counts (clips, cached_before, computed, failed list with
        reasons), bad_entries (cache entries found unusable, moved aside and computed again: one
        ``{file, clip_id, reason, moved_to}`` each), legacy (entries found under the older, path-based
        names: renamed, recomputed (augmentation copies) or unmatched, each with a count and the reason,
        and the stream's old folder name when it was keyed by a weights file's modification time;
        ``cache_migration``), padded clips, seeks used, and timings: decode_s
        (elapsed decoder-seconds summed over workers; decoders run at low priority, so this includes
        time waiting for a core), decode_cpu_s (CPU the decoding really cost), model_s, wait_s (local:
        backbone idle, waiting on decoders; Ray: the driver waiting on the cluster), write_s, wall_s,
        clips_per_s, frames_per_s.
    """
    _check_arguments(manifest, stream, workers, executor)
    cache_dir = stream.cache_dir(cache_root)
    renamed_from = migrate_legacy_stream_dir(stream, cache_root)  # a weights file keyed by its modification time
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(".*.tmp"):  # a clip file a killed run was writing: never renamed, never valid
        stale.unlink(missing_ok=True)
    jobs = _jobs(manifest, stream)
    if jobs:
        check_job_transform(jobs[0])  # a feature-level transform fails here, before any worker starts
    legacy_names = [legacy_clip_cache_name(row) for _, row in manifest.iterrows()]
    legacy = migrate_legacy_entries(cache_dir, jobs, legacy_names, redraw=stream.augmentation is not None)
    legacy["stream_folder_renamed_from"] = renamed_from
    bad = check_entries(cache_dir, jobs)  # moved aside: computed again below
    writer = CacheWriter(cache_dir)
    todo = [job for job in jobs if not (cache_dir / job.name).exists()]
    recheck = {entry["file"] for entry in bad}  # a bad entry is always computed again
    skipped = (
        [] if retry_failed else [job for job in todo if writer.known_failure(job.name) and job.name not in recheck]
    )
    todo = [job for job in todo if job not in skipped]
    summary: dict[str, Any] = {
        "cache_dir": str(cache_dir),
        "key": stream.key,
        "backbone": stream.backbone,
        "transform": stream.transform,
        "executor": executor,
        "workers": workers,
        "clips": len(jobs),
        "cached_before": len(jobs) - len(todo) - len(skipped),
        "computed": 0,
        "failed": [writer.failures[job.name] for job in skipped],
        "bad_entries": bad,
        "legacy": legacy,
        "padded": 0,
        "seeks": 0,
    }
    meta = stream.describe()
    if stream.augmentation is not None:
        ops, copy, seed = stream.augmentation
        meta["augmentation"] = {"ops": list(ops), "copy": copy, "seed": seed}
    write_json_atomic(cache_dir / "meta.json", meta)
    timer = {"decode_s": 0.0, "decode_cpu_s": 0.0, "model_s": 0.0, "wait_s": 0.0}
    wall0 = time.perf_counter()
    try:
        if todo:
            results = _executor_results(
                executor,
                todo,
                stream,
                batch_size or stream.spec.batch_size,
                workers,
                mixed_precision,
                ray_address,
                timer,
            )
            label = f"features {stream.backbone}" + ("" if stream.transform == "identity" else f" [{stream.transform}]")
            with _progress(len(todo), label, progress) as bar:
                for job, feats, error, record in results:
                    _record(writer, summary, timer, job, feats, error, record)
                    bar.update(1)
    finally:
        writer.close()
    wall = time.perf_counter() - wall0
    done = summary["computed"]
    summary.update(
        {k: round(v, 3) for k, v in timer.items()},
        write_s=round(writer.write_s, 3),
        wall_s=round(wall, 3),
        clips_per_s=round(done / wall, 2) if done and wall else None,
        frames_per_s=round(done * stream.frames_per_clip / wall, 1) if done and wall else None,
    )
    return summary


def _record(writer: CacheWriter, summary: dict, timer: dict, job, feats, error, record) -> None:
    """Write one clip's answer to the cache and count it in the summary."""
    timer["decode_s"] += record.get("decode_s", 0.0)
    timer["decode_cpu_s"] += record.get("decode_cpu_s", 0.0)
    if error is not None:
        summary["failed"].append(writer.failure(job, error))
        return
    writer.features(job, feats, record)
    summary["computed"] += 1
    summary["padded"] += bool(record.get("padded"))
    summary["seeks"] += int(record.get("seeks", 0))


def _executor_results(
    executor, jobs, stream: FeatureStream, batch_frames, workers, mixed_precision, ray_address, timer
):
    """(job, features or None, error or None, record) for every job, from the chosen executor."""
    if executor == "ray":
        from nexara_lib.features.ray_executor import ray_results  # Ray loads only when asked for

        return ray_results(
            jobs,
            backbone=stream.backbone,
            weights=stream.weights,
            size=stream.size,
            batch_frames=batch_frames,
            workers=workers,
            mixed_precision=mixed_precision,
            address=ray_address,
            timer=timer,
        )
    return local_results(
        jobs,
        create_backbone(stream.backbone, stream.weights, stream.size, mixed_precision=mixed_precision),
        batch_frames,
        workers,
        timer,
    )


def local_results(jobs, encode, batch_frames: int, workers: int, timer: dict):
    """The local executor: decoder processes (or this process) -> fixed-size backbone batches.

    Yields (job, features (T, D) float32 (stream views of R regions: (T, R * D)) or None, error or None,
    record) as clips complete;
    ``timer`` gets model_s and wait_s.
    """
    batcher: FeatureBatcher[str] = FeatureBatcher(encode, batch_frames)
    waiting: dict[str, DecodedClip] = {}
    queue_clips = max(2, 2 * -(-batch_frames // max(1, jobs[0].encoded_frames)) + workers) if jobs else 2
    for answer in decoded_clips(jobs, workers, queue_clips, timer):
        if answer.error is not None or answer.frames is None:
            yield answer.job, None, answer.error or "the decoder returned no frames", answer.record
            continue
        waiting[answer.job.name] = answer
        frames = answer.frames
        answer.frames = None  # the batcher holds them now
        for name, feats in batcher.add(answer.job.name, frames, answer.job.regions):
            done = waiting.pop(name)
            yield done.job, feats, None, done.record
        timer["model_s"] = batcher.model_s
    for name, feats in batcher.flush():
        done = waiting.pop(name)
        yield done.job, feats, None, done.record
    timer["model_s"] = batcher.model_s


def extract_augmented_copies(
    manifest: pd.DataFrame, stream: FeatureStream, cache_root: str | Path, *, copies: int, ops, seed: int, **options
) -> list[dict]:
    """Extract ``copies`` seeded augmentation copies (1..N) of ``stream`` for every clip, each under
    its own key. ``options`` are those of ``extract_features``. Returns one summary per copy."""
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 0:
        raise ValueError(f"augmentation copies must be an integer >= 0, got {copies!r}")
    return [
        extract_features(manifest, stream.augmentation_copy(ops, copy, seed), cache_root, **options)
        for copy in range(1, int(copies) + 1)
    ]


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, mininterval=1.0)
