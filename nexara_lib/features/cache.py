"""The feature cache on disk: one ``.npy`` per clip under a stream's key folder, plus how each
clip was read (``clips.jsonl``) and the clips that failed (``failures.json``).

A clip's file holds ``(T, D)`` float16 features, or ``(T, R * D)`` under a stream view of R regions
per frame (``tiles``: the tiles of a frame side by side, row-major); ``FeatureStream.load`` pools them.

A clip's file name carries a hash of its clip id and content facts (bytes, content hash, frame
count; ``clip_cache_name``), so a replaced or re-encoded file gets new features and a moved dataset
keeps its cache (names of the older, path-based scheme are carried over once: ``cache_migration``).
Every file is written to a temporary name and renamed: a crash leaves complete files or none.

A clip's ``.npy`` is never trusted because it exists: it is written with a checksum file
(``<name>.npy.sum``: shape, dtype, size, sha256; ``features.cache_entries``) and every read goes
through ``read_features``, which checks both and raises ``CacheEntryError`` naming the file.
Extraction checks every entry before deciding what to compute (``check_entries``): a bad one is
moved aside into ``<cache dir>/bad/``, computed again and listed in the summary (``bad_entries``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.features.cache_entries import CacheEntryError, quarantine, read_entry, write_entry
from nexara_lib.io import read_json, write_json_atomic

log = logging.getLogger(__name__)

# Columns of ``read_clip_records`` (always present, also when nothing was recorded yet).
CLIP_RECORD_COLUMNS = (
    "file",
    "clip_id",
    "n_frames",
    "distinct_frames",
    "padded",
    "strategy",
    "grabs",
    "seeks",
    "seek_fallbacks",
    "grab_ms",
    "seek_ms",
    "remapped",
    "frames_decoded",
    "decode_s",
    "decode_cpu_s",
)


# What a cached feature file holds: features are rounded to this type when written, so anything that scores
# fresh features with a model trained on the cache (the streaming detector) rounds them the same way.
CACHE_DTYPE = np.float16


def as_cached(features) -> np.ndarray:
    """``features`` as a model trained on the cache sees them: rounded to ``CACHE_DTYPE``, back as float32."""
    return np.asarray(features, dtype=CACHE_DTYPE).astype(np.float32)


def _content_field(row, key: str) -> str:
    """A manifest field as text, the same whichever way the row was read (103, 103.0 and "103" alike; missing = "")."""
    value = row.get(key, "")
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def clip_cache_name(row) -> str:
    """File name of one clip's features: its id plus a hash of who the clip is and what it holds.

    The hash covers the clip id (the dataset folder's name and the path inside it, ``audit.make_clip_id``)
    and the content facts of the audit: size in bytes, content hash (sha1) and verified frame count. So
    a replaced or re-encoded file gets new features, while the same dataset moved, mounted elsewhere or
    read from another output root keeps its names: nothing here depends on an absolute path. The name
    also seeds the clip's augmentation draws (``clip_jobs``), so those do not depend on a path either.
    """
    ident = json.dumps(["clip", str(row["clip_id"]), *(_content_field(row, k) for k in ("bytes", "sha1", "frames"))])
    digest = hashlib.sha1(ident.encode("utf-8")).hexdigest()[:10]
    return f"{clip_name_prefix(row['clip_id'])}{digest}.npy"


def clip_name_prefix(clip_id) -> str:
    """The readable start of every cache name of clip ``clip_id`` (its id, file-name safe, then a dash)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(clip_id))[:80] + "-"


class CacheWriter:
    """Writes one clip's features, its read record and failures into a cache folder."""

    def __init__(self, cache_dir: Path):
        self.dir = cache_dir
        self.failures: dict = read_json(cache_dir / "failures.json", {})
        self.log = open(cache_dir / "clips.jsonl", "a", encoding="utf-8")
        self.write_s = 0.0

    def known_failure(self, name: str) -> bool:
        return name in self.failures

    def features(self, job, feats: np.ndarray, record: dict) -> None:
        """Write one clip's (T, D) features ((T, R * D) under a stream view) and its read record."""
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[0] != job.frames_per_clip or feats.shape[1] % job.regions:
            raise ValueError(
                f"cache {self.dir}: features of clip {job.clip_id!r} must be (T={job.frames_per_clip}, "
                f"regions x D) with {job.regions} region(s) per frame, got shape "
                f"{feats.shape}; the executor must hand back one row per sampled frame"
            )
        t0 = time.perf_counter()
        # The read record first, then the entry (its commit point): a kill between the two leaves a record without
        # an entry, which readers skip and a rerun replaces, never an entry without its record.
        self.log.write(json.dumps({"file": job.name, "clip_id": job.clip_id, **record}) + "\n")
        self.log.flush()
        write_entry(self.dir / job.name, np.asarray(feats, dtype=CACHE_DTYPE))
        if self.failures.pop(job.name, None) is not None:  # a retried clip that now decodes
            write_json_atomic(self.dir / "failures.json", self.failures)
        self.write_s += time.perf_counter() - t0

    def failure(self, job, reason: str) -> dict:
        entry = {"clip_id": job.clip_id, "path": job.path, "reason": reason}
        self.failures[job.name] = entry
        write_json_atomic(self.dir / "failures.json", self.failures)
        return entry

    def close(self) -> None:
        self.log.close()


def read_clip_records(cache_dir: str | Path) -> pd.DataFrame:
    """How each cached clip was read (``clips.jsonl``; the newest record per file wins).

    A line cut short by a crash is ignored, and so is the record of a clip whose entry was never committed.
    """
    rows = {}
    path = Path(cache_dir) / "clips.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and (Path(cache_dir) / str(entry.get("file"))).is_file():
                rows[entry.get("file")] = entry
    return pd.DataFrame(list(rows.values()), columns=None if rows else list(CLIP_RECORD_COLUMNS))


def read_features(path: str | Path, frames: int | None = None, regions: int = 1) -> np.ndarray:
    """One clip's cached features as written ((T, R * D) ``CACHE_DTYPE``, read-only), after every check.

    Args:
        path: the clip's ``.npy`` in a stream's cache folder.
        frames: T the stream samples (None: not checked).
        regions: R regions per frame of a stream view; the columns must split into R equal parts.
    Raises:
        CacheEntryError: naming the file, what is wrong with it and how to fix it.
    """
    x = read_entry(path)
    if x.ndim != 2 or x.dtype != CACHE_DTYPE:
        raise CacheEntryError(
            path,
            f"holds a {x.ndim}-D {x.dtype.name} array of shape {x.shape}; a clip's features "
            f"are 2-D (T, D) {np.dtype(CACHE_DTYPE).name}",
        )
    if frames is not None and x.shape[0] != frames:
        raise CacheEntryError(path, f"holds {x.shape[0]} frames, the stream samples T={frames}")
    if x.shape[1] % max(1, regions):
        raise CacheEntryError(path, f"holds {x.shape[1]} columns, not {regions} equal regions")
    return x


def check_entries(cache_dir: str | Path, jobs) -> list[dict]:
    """Check the cached entry of every job that has one; move each bad one aside (``cache_entries.quarantine``)
    so that extraction computes it again.

    Returns:
        One ``{file, clip_id, reason, moved_to}`` per bad entry (``moved_to`` relative to ``cache_dir``).
    """
    cache_dir = Path(cache_dir)
    bad = []
    for job in jobs:
        path = cache_dir / job.name
        if not path.exists():  # never cached, or a crash before the commit: computed anyway
            continue
        try:
            read_features(path, job.frames_per_clip, job.regions)
        except CacheEntryError as err:
            moved = quarantine(path, err.reason)
            bad.append(
                {
                    "file": job.name,
                    "clip_id": job.clip_id,
                    "reason": err.reason,
                    "moved_to": moved.relative_to(cache_dir).as_posix(),
                }
            )
            log.warning(
                "feature cache: %s is unusable (%s); moved aside to %s, computing it again", path, err.reason, moved
            )
    return bad


def load_features(
    manifest: pd.DataFrame, cache_dir: str | Path, frames: int | None = None, regions: int = 1
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load cached features of the manifest rows that have them, each checked (``read_features``).

    Args:
        frames, regions: what the stream caches (``FeatureStream.load`` passes them); None/1: unchecked.
    Returns:
        (x (N, T, D) float32, y (N,) int, clip_ids) in manifest order; rows whose clip
        failed to decode are left out (they are listed by ``extract_features``).
    Raises:
        CacheEntryError: a clip's file is there but cannot be trusted (truncated, changed, no
            checksum file, ...); the message names it. Re-running extraction computes it again.
    """
    cache_dir = Path(cache_dir)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    ids: list[str] = []
    for _, row in manifest.iterrows():
        path = cache_dir / clip_cache_name(row)
        if path.exists():
            x = read_features(path, frames, regions)
            if xs and x.shape != xs[0].shape:
                raise CacheEntryError(path, f"holds shape {x.shape}, the clips before it {xs[0].shape}")
            xs.append(x.astype(np.float32))
            ys.append(int(row["label"]))
            ids.append(str(row["clip_id"]))
    if not xs:
        raise ValueError(
            f"no cached features in {cache_dir} for these {len(manifest)} clips; "
            "run feature extraction (notebook 02 or `nexara extract`) first"
        )
    return np.stack(xs), np.asarray(ys, dtype=np.int64), ids
