"""Stage 2: sample T frames per clip, encode them with a frozen backbone, cache float16 sequences.

Cache layout: ``<cache_root>/<key>/<clip_id>.npy`` (float16, shape (T, D)) plus
``meta.json``. The key names the backbone, its weights, T, the frame size and the
frame transform, so a changed parameter never reuses stale features. Each clip
file is written to a temporary name and renamed, so a crash leaves either a
complete file or none: rerunning computes only the missing clips.
"""
from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .backbones import create_backbone, feature_dim, get_backbone_spec, resolve_image_size, weights_identity
from .runinfo import write_json_atomic
from .video import VideoReadError, probe_video, read_frames, sample_frame_indices


def feature_cache_key(backbone: str, weights: str, frames_per_clip: int, image_size: int,
                      transform: str = "identity") -> str:
    """Folder name that identifies one feature set (everything that changes the numbers)."""
    size = resolve_image_size(backbone, image_size)
    return f"{backbone}-{weights_identity(weights)}-T{frames_per_clip}-S{size}-{transform}"


def clip_cache_name(row) -> str:
    """File name of one clip's features: its id plus a hash of the file's identity (path, bytes, sha1)."""
    ident = f"{row['path']}|{row.get('bytes', '')}|{row.get('sha1', '')}"
    digest = hashlib.sha1(ident.encode("utf-8")).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(row["clip_id"]))[:80]
    return f"{safe}-{digest}.npy"


def _frame_transform(transform: str):
    if transform == "identity":
        return None
    from .tta import get_tta_transform
    entry = get_tta_transform(transform)
    if getattr(entry, "level", "frame") != "frame":
        raise ValueError(f"transform {transform!r} acts on features, not frames; apply it after loading features")
    return entry


def _apply_frame_transform(entry, frames: np.ndarray) -> np.ndarray:
    fn = entry.fn if hasattr(entry, "fn") else entry
    if frames.ndim == 5:  # (T, 2, H, W, 3) pairs: transform both frames of every pair alike
        return np.stack([fn(frames[:, 0]), fn(frames[:, 1])], axis=1)
    return fn(frames)


def sampled_indices(n_frames: int, t: int, pairs: bool = False, offset: float = 0.0) -> np.ndarray:
    """The T frame indices extracted from a clip of ``n_frames`` frames.

    Pairs need a real next frame, so they are sampled over [0, n-2] (the last step is never a frame
    paired with itself). ``offset`` moves every index that fraction of the sampling stride later
    (the ``frame_shift`` TTA view), clipped to the clip.
    """
    span = n_frames - 1 if pairs and n_frames >= 2 else n_frames
    indices = sample_frame_indices(span, t)
    if offset:
        stride = (span - 1) / max(t - 1, 1)
        indices = np.clip(indices + int(round(offset * stride)), 0, span - 1)
    return indices


def _decode_clip(path: str, n_frames: int, t: int, size: int, pairs: bool, transform):
    """Worker: read T frames (or pairs) of one clip; returns (frames, error)."""
    try:
        if not n_frames or int(n_frames) <= 0:  # not audited: count the frames first
            n_frames = probe_video(path)["frames"] or 0
        if int(n_frames) < 1:
            return None, "no decodable frames"
        indices = sampled_indices(int(n_frames), t, pairs, getattr(transform, "sampling_offset", 0.0))
        frames = read_frames(path, indices, size=size, with_next=pairs)
        if transform is not None:
            frames = _apply_frame_transform(transform, frames)
        return frames, None
    except (VideoReadError, ValueError, OSError) as err:
        return None, str(err)


def extract_features(manifest: pd.DataFrame, *, backbone: str, weights: str, frames_per_clip: int,
                     image_size: int, cache_root: str | Path, batch_size: int = 0,
                     transform: str = "identity", workers: int = 2, progress: bool = True) -> dict:
    """Compute and cache features for every manifest row not cached yet.

    Args:
        manifest: usable clips (columns clip_id, path, frames; optional bytes, sha1).
        backbone, weights, frames_per_clip, image_size: see the parameter reference.
        cache_root: folder holding one sub-folder per feature key.
        batch_size: frames per backbone call (0 = the backbone's default).
        transform: 'identity' or a frame-level TTA transform name (stored under its own key).
        workers: decoding threads (OpenCV releases the GIL while decoding).
    Returns:
        dict with cache_dir, counts (cached, computed, failed), failed clips with reasons,
        and timings (decode_s, model_s, wall_s, clips_per_s, frames_per_s).
    """
    spec = get_backbone_spec(backbone)
    size = resolve_image_size(backbone, image_size)
    key = feature_cache_key(backbone, weights, frames_per_clip, image_size, transform)
    cache_dir = Path(cache_root) / key
    cache_dir.mkdir(parents=True, exist_ok=True)
    frame_transform = _frame_transform(transform)
    todo = [row for _, row in manifest.iterrows() if not (cache_dir / clip_cache_name(row)).exists()]
    summary = {"cache_dir": str(cache_dir), "key": key, "backbone": backbone, "clips": len(manifest),
               "cached_before": len(manifest) - len(todo), "computed": 0, "failed": []}
    if not todo:
        summary.update(decode_s=0.0, model_s=0.0, wall_s=0.0, clips_per_s=None, frames_per_s=None)
        return summary

    encode = create_backbone(backbone, weights, image_size)
    batch_frames = batch_size or spec.batch_size
    clips_per_batch = max(1, batch_frames // frames_per_clip)
    bar = _progress(len(todo), f"features {backbone}", progress)
    decode_s = model_s = 0.0
    wall0 = time.perf_counter()
    pending: list[tuple] = []  # (row, frames) waiting for the next backbone call

    def flush():
        nonlocal model_s
        if not pending:
            return
        stacked = np.concatenate([frames for _, frames in pending])
        t0 = time.perf_counter()
        feats = encode(stacked)
        model_s += time.perf_counter() - t0
        for i, (row, _) in enumerate(pending):
            seq = feats[i * frames_per_clip:(i + 1) * frames_per_clip].astype(np.float16)
            _save_npy_atomic(cache_dir / clip_cache_name(row), seq)
            summary["computed"] += 1
        pending.clear()

    def decode(row):
        t0 = time.perf_counter()
        frames, err = _decode_clip(row["path"], row.get("frames", 0), frames_per_clip, size,
                                   spec.needs_next_frame, frame_transform)
        return row, frames, err, time.perf_counter() - t0

    # Threads decode ahead while the main thread runs the backbone; map() keeps a bounded window.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for row, frames, err, seconds in _bounded_map(pool, decode, todo, window=4 * clips_per_batch):
            decode_s += seconds
            if err is not None:
                summary["failed"].append({"clip_id": row["clip_id"], "path": row["path"], "reason": err})
            else:
                pending.append((row, frames))
                if len(pending) >= clips_per_batch:
                    flush()
            bar.update(1)
    flush()
    bar.close()
    wall = time.perf_counter() - wall0
    done = summary["computed"]
    summary.update(decode_s=round(decode_s, 3), model_s=round(model_s, 3), wall_s=round(wall, 3),
                   clips_per_s=round(done / wall, 2) if wall else None,
                   frames_per_s=round(done * frames_per_clip / wall, 1) if wall else None)
    write_json_atomic(cache_dir / "meta.json", {
        "key": key, "backbone": backbone, "weights": weights, "frames_per_clip": frames_per_clip,
        "image_size": size, "transform": transform, "feature_dim": feature_dim(backbone),
        "preprocessing": spec.preprocessing})
    return summary


def _bounded_map(pool, fn, items, window):
    """Like pool.map but with at most ``window`` tasks in flight (memory stays bounded)."""
    futures = []
    for item in items:
        futures.append(pool.submit(fn, item))
        if len(futures) >= window:
            yield futures.pop(0).result()
    for fut in futures:
        yield fut.result()


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, mininterval=1.0)


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
