"""Stage 2: sample T frames per clip, encode them with a frozen backbone, cache float16 sequences.

Cache layout: ``<cache_root>/<key>/<clip file>.npy`` (float16, shape (T, D)),
``meta.json``, ``clips.jsonl`` (how each clip was read: strategy, seeks, padding,
augmentation parameters) and ``failures.json`` (clips that did not decode, with
the reason). The key names the backbone, its weights, T, the frame size and the
frame transform; a clip's file name carries a hash of its manifest row (path,
bytes, content hash, frame count). So a changed parameter or a changed file makes
a new key, never a silent reuse. Each clip file is written to a temporary name
and renamed: a crash (even kill -9) leaves complete files or none, and a rerun
computes only the clips without one.

Executors: ``local`` (decoder processes feeding this process's backbone, see
``extraction_pipeline``) and ``ray`` (clips spread over a Ray cluster, see
``ray_extraction``); both write the same cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.features.backbones import create_backbone, feature_dim, get_backbone_spec, resolve_image_size, weights_identity
from nexara_lib.features.clip_jobs import ClipJob, check_job_transform, sampled_indices  # noqa: F401  (sampled_indices: public here)
from nexara_lib.io import read_json, save_npy_atomic, write_json_atomic

EXECUTORS = ("local", "ray")
# Columns of ``read_clip_records`` (always present, also when nothing was recorded yet).
CLIP_RECORD_COLUMNS = ("file", "clip_id", "n_frames", "distinct_frames", "padded", "strategy", "grabs", "seeks",
                       "seek_fallbacks", "grab_ms", "seek_ms", "remapped", "frames_decoded", "decode_s",
                       "decode_cpu_s")


def feature_cache_key(backbone: str, weights: str, frames_per_clip: int, image_size: int,
                      transform: str = "identity") -> str:
    """Folder name that identifies one feature set (everything that changes the numbers)."""
    size = resolve_image_size(backbone, image_size)
    return f"{backbone}-{weights_identity(weights)}-T{frames_per_clip}-S{size}-{transform}"


def clip_cache_name(row) -> str:
    """File name of one clip's features: its id plus a hash of its manifest row's content.

    The hash covers the path, size in bytes, content hash (sha1 from the audit) and verified
    frame count, so a replaced or re-encoded file gets new features.
    """
    ident = f"{row['path']}|{row.get('bytes', '')}|{row.get('sha1', '')}|{row.get('frames', '')}"
    digest = hashlib.sha1(ident.encode("utf-8")).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(row["clip_id"]))[:80]
    return f"{safe}-{digest}.npy"


def _jobs(manifest: pd.DataFrame, frames_per_clip: int, size: int, pairs: bool, transform: str,
          augmentation) -> list[ClipJob]:
    jobs = []
    for _, row in manifest.iterrows():
        frames = row.get("frames", 0)
        try:
            frames = int(frames) if frames not in ("", None) and not pd.isna(frames) else 0
        except (TypeError, ValueError):
            frames = 0
        jobs.append(ClipJob(clip_cache_name(row), str(row["clip_id"]), str(row["path"]), frames,
                            int(frames_per_clip), size, pairs, transform, augmentation))
    return jobs


def _check_arguments(manifest, frames_per_clip, workers, executor) -> None:
    missing = {"clip_id", "path"} - set(manifest.columns)
    if missing:
        raise ValueError(f"extract_features: the manifest lacks column(s) {sorted(missing)}; "
                         "pass the manifest.csv written by the audit (notebook 01 or `nexara audit`)")
    if isinstance(frames_per_clip, bool) or not isinstance(frames_per_clip, (int, np.integer)) or frames_per_clip < 1:
        raise ValueError(f"extract_features: frames_per_clip must be a positive integer, got {frames_per_clip!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"extract_features: workers must be an integer >= 0 (0 = decode in this process), "
                         f"got {workers!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"extract_features: executor {executor!r} is not one of {list(EXECUTORS)}")


class _CacheWriter:
    """Writes one clip's features, its read record and failures into a cache folder."""

    def __init__(self, cache_dir: Path):
        self.dir = cache_dir
        self.failures: dict = read_json(cache_dir / "failures.json", {})
        self.log = open(cache_dir / "clips.jsonl", "a", encoding="utf-8")
        self.write_s = 0.0

    def known_failure(self, name: str) -> bool:
        return name in self.failures

    def features(self, job: ClipJob, feats: np.ndarray, record: dict) -> None:
        t0 = time.perf_counter()
        save_npy_atomic(self.dir / job.name, np.asarray(feats, dtype=np.float16))
        self.log.write(json.dumps({"file": job.name, "clip_id": job.clip_id, **record}) + "\n")
        self.log.flush()
        if self.failures.pop(job.name, None) is not None:  # a retried clip that now decodes
            write_json_atomic(self.dir / "failures.json", self.failures)
        self.write_s += time.perf_counter() - t0

    def failure(self, job: ClipJob, reason: str) -> dict:
        entry = {"clip_id": job.clip_id, "path": job.path, "reason": reason}
        self.failures[job.name] = entry
        write_json_atomic(self.dir / "failures.json", self.failures)
        return entry

    def close(self) -> None:
        self.log.close()


def extract_features(manifest: pd.DataFrame, *, backbone: str, weights: str, frames_per_clip: int,
                     image_size: int, cache_root: str | Path, batch_size: int = 0,
                     transform: str = "identity", augmentation: tuple | None = None, workers: int = 2,
                     executor: str = "local", ray_address: str | None = None, mixed_precision: str = "auto",
                     retry_failed: bool = False, progress: bool = True) -> dict:
    """Compute and cache features for every manifest row not cached yet.

    Args:
        manifest: usable clips (columns clip_id, path; optional frames (verified count from the
            audit; 0 or missing = counted first), bytes, sha1).
        backbone, weights, frames_per_clip, image_size: see the parameter reference.
        cache_root: folder holding one sub-folder per feature key.
        batch_size: frames per backbone call (0 = the backbone's own batch size).
        transform: 'identity' or a frame-level TTA view name (stored under its own key).
        augmentation: (ops, copy, seed) to extract augmentation copy ``copy`` (see
            ``frame_augment``); stored under its own key, ``transform`` is then ignored.
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
        reasons), padded clips, seeks used, and timings: decode_s (elapsed decoder-seconds summed
        over workers; decoders run at low priority, so this includes time waiting for a core),
        decode_cpu_s (CPU the decoding really cost), model_s, wait_s (local: backbone idle, waiting
        on decoders; Ray: the driver waiting on the cluster), write_s, wall_s, clips_per_s, frames_per_s.
    """
    _check_arguments(manifest, frames_per_clip, workers, executor)
    spec = get_backbone_spec(backbone)
    size = resolve_image_size(backbone, image_size)
    if augmentation is not None:
        from nexara_lib.features.frame_augment import augmentation_transform_name, check_frame_augment_ops
        ops, copy, seed = augmentation
        check_frame_augment_ops(list(ops))
        augmentation = (tuple(ops), int(copy), int(seed))
        transform = augmentation_transform_name(list(ops), int(copy), int(seed))
    key = feature_cache_key(backbone, weights, frames_per_clip, image_size, transform)
    cache_dir = Path(cache_root) / key
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(".*.tmp"):  # a clip file a killed run was writing: never renamed, never valid
        stale.unlink(missing_ok=True)
    jobs = _jobs(manifest, frames_per_clip, size, spec.needs_next_frame, transform, augmentation)
    if jobs:
        check_job_transform(jobs[0])  # a feature-level transform fails here, before any worker starts
    writer = _CacheWriter(cache_dir)
    todo = [job for job in jobs if not (cache_dir / job.name).exists()]
    skipped = [] if retry_failed else [job for job in todo if writer.known_failure(job.name)]
    todo = [job for job in todo if job not in skipped]
    summary = {"cache_dir": str(cache_dir), "key": key, "backbone": backbone, "transform": transform,
               "executor": executor, "workers": workers, "clips": len(jobs),
               "cached_before": len(jobs) - len(todo) - len(skipped), "computed": 0,
               "failed": [writer.failures[job.name] for job in skipped], "padded": 0, "seeks": 0}
    meta = {"key": key, "backbone": backbone, "weights": weights, "frames_per_clip": frames_per_clip,
            "image_size": size, "transform": transform, "feature_dim": feature_dim(backbone),
            "preprocessing": spec.preprocessing}
    if augmentation is not None:
        meta["augmentation"] = {"ops": list(augmentation[0]), "copy": augmentation[1], "seed": augmentation[2]}
    write_json_atomic(cache_dir / "meta.json", meta)
    timer = {"decode_s": 0.0, "decode_cpu_s": 0.0, "model_s": 0.0, "wait_s": 0.0}
    wall0 = time.perf_counter()
    try:
        if todo:
            results = _executor_results(executor, todo, backbone, weights, size, batch_size or spec.batch_size,
                                        workers, mixed_precision, ray_address, timer)
            label = f"features {backbone}" + ("" if transform == "identity" else f" [{transform}]")
            with _progress(len(todo), label, progress) as bar:
                for job, feats, error, record in results:
                    _record(writer, summary, timer, job, feats, error, record)
                    bar.update(1)
    finally:
        writer.close()
    wall = time.perf_counter() - wall0
    done = summary["computed"]
    summary.update({k: round(v, 3) for k, v in timer.items()}, write_s=round(writer.write_s, 3),
                   wall_s=round(wall, 3), clips_per_s=round(done / wall, 2) if done and wall else None,
                   frames_per_s=round(done * frames_per_clip / wall, 1) if done and wall else None)
    return summary


def _record(writer: _CacheWriter, summary: dict, timer: dict, job, feats, error, record) -> None:
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


def _executor_results(executor, jobs, backbone, weights, size, batch_frames, workers, mixed_precision,
                      ray_address, timer):
    """(job, features or None, error or None, record) for every job, from the chosen executor."""
    if executor == "ray":
        from nexara_lib.features.ray_executor import ray_results
        return ray_results(jobs, backbone=backbone, weights=weights, size=size, batch_frames=batch_frames,
                           workers=workers, mixed_precision=mixed_precision, address=ray_address, timer=timer)
    return local_results(jobs, create_backbone(backbone, weights, size, mixed_precision=mixed_precision),
                         batch_frames, workers, timer)


def local_results(jobs, encode, batch_frames: int, workers: int, timer: dict):
    """The local executor: decoder processes (or this process) -> fixed-size backbone batches.

    Yields (job, features (T, D) float32 or None, error or None, record) as clips complete;
    ``timer`` gets model_s and wait_s.
    """
    from nexara_lib.features.local_executor import FeatureBatcher, decoded_clips
    batcher = FeatureBatcher(encode, batch_frames)
    waiting = {}
    queue_clips = max(2, 2 * -(-batch_frames // max(1, jobs[0].frames_per_clip)) + workers) if jobs else 2
    for answer in decoded_clips(jobs, workers, queue_clips, timer):
        if answer.error is not None:
            yield answer.job, None, answer.error, answer.record
            continue
        waiting[answer.job.name] = answer
        frames = answer.frames
        answer.frames = None  # the batcher holds them now
        for name, feats in batcher.add(answer.job.name, frames):
            done = waiting.pop(name)
            yield done.job, feats, None, done.record
        timer["model_s"] = batcher.model_s
    for name, feats in batcher.flush():
        done = waiting.pop(name)
        yield done.job, feats, None, done.record
    timer["model_s"] = batcher.model_s


def extract_augmented_copies(manifest: pd.DataFrame, *, copies: int, ops, seed: int, **kwargs) -> list[dict]:
    """Extract ``copies`` augmentation copies of every clip (copy 1..N), each under its own key.

    ``kwargs`` are those of ``extract_features``. Returns one summary per copy.
    """
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 0:
        raise ValueError(f"augmentation copies must be an integer >= 0, got {copies!r}")
    return [extract_features(manifest, augmentation=(tuple(ops), copy, seed), **kwargs)
            for copy in range(1, int(copies) + 1)]


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, mininterval=1.0)


def read_clip_records(cache_dir: str | Path) -> pd.DataFrame:
    """How each cached clip was read (``clips.jsonl``; the newest record per file wins).

    A line cut short by a crash is ignored.
    """
    rows = {}
    path = Path(cache_dir) / "clips.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[entry.get("file")] = entry
    return pd.DataFrame(list(rows.values()), columns=None if rows else list(CLIP_RECORD_COLUMNS))


def load_features(manifest: pd.DataFrame, cache_dir: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load cached features of the manifest rows that have them.

    Returns:
        (x (N, T, D) float32, y (N,) int, clip_ids) in manifest order; rows whose clip
        failed to decode are left out (they are listed by ``extract_features``).
    """
    cache_dir = Path(cache_dir)
    xs, ys, ids = [], [], []
    for _, row in manifest.iterrows():
        path = cache_dir / clip_cache_name(row)
        if path.exists():
            xs.append(np.load(path).astype(np.float32))
            ys.append(int(row["label"]))
            ids.append(str(row["clip_id"]))
    if not xs:
        raise ValueError(f"no cached features in {cache_dir} for these {len(manifest)} clips; "
                         "run feature extraction (notebook 02 or `nexara extract`) first")
    return np.stack(xs), np.asarray(ys, dtype=np.int64), ids


def feature_overview_figure(x: np.ndarray, y: np.ndarray):
    """Per-class mean feature norm over time (±1 std) and a PCA of time-pooled features.

    Args:
        x: (N, T, D) features of one split; y: (N,) labels.
    """
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_time, ax_pca = fig.subplots(1, 2)
    norms = np.linalg.norm(x, axis=2)
    pooled = StandardScaler().fit_transform(np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1))
    points = PCA(n_components=2, random_state=0).fit_transform(pooled) if len(x) > 2 else np.zeros((len(x), 2))
    for label, name, color in ((0, "non-violent", "tab:blue"), (1, "violent", "tab:red")):
        rows = norms[y == label]
        if len(rows) == 0:
            continue
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        steps = np.arange(x.shape[1])
        ax_time.plot(steps, mean, color=color, label=name)
        ax_time.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
        ax_pca.scatter(*points[y == label].T, s=12, color=color, alpha=0.7, label=name)
    ax_time.set(xlabel="sampled frame", ylabel="feature L2 norm", title="features over time (training split)")
    ax_pca.set(xlabel="PC 1", ylabel="PC 2", title="PCA of time-pooled features (mean, std)")
    ax_time.legend()
    ax_pca.legend()
    return fig
