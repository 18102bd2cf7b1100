"""Stage 01, data audit: find clips, probe them, group duplicates, make splits.

The manifest this module writes is the single source of truth for later
stages: one row per usable clip with its label, split, source, group and probe
facts. Notebook 01 calls, in order::

    manifest, unusable, summary = build_manifest(data_dirs, groups_csv, ...)
    write_audit(manifest, unusable, summary, artifacts_dir)
    class_balance_figure(manifest); duration_figure(manifest); frame_grid_figure(manifest)

Splits are always grouped: clips that share a group (a source recording from a
groups CSV) or a duplicate cluster (identical bytes, or look-alike frames such
as a re-encoded copy) never land in two splits, because a model that saw a
near-copy of a test clip in training reports inflated accuracy.

Probing runs in worker processes with a per-clip timeout, so a file that hangs
or crashes the decoder costs only itself; every file found ends up either in
the manifest or in the unusable list with a reason.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import pickle
import re
import signal
import tempfile
import time
import warnings
from collections import Counter, deque
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.io import to_jsonable, write_atomic
from nexara_lib.labels import CLASS_NAMES
from nexara_lib.video.probe import (PHASH_POSITIONS, VIDEO_SUFFIXES, VideoReadError, empty_probe, parse_phash, probe_video,
                              read_frames, sample_frame_indices)

SPLITS = ("train", "val", "test")
# Split folder names as datasets spell them -> our split name.
SPLIT_SYNONYMS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "testing": "test"}
# Class folder names (lower case, '-' and ' ' read as '_') -> label.
CLASS_SYNONYMS = {
    **{name: 1 for name in ("fight", "fights", "violence", "violent")},
    **{name: 0 for name in ("nofight", "nofights", "no_fight", "no_fights", "nonfight", "nonfights", "non_fight",
                            "non_fights", "nonviolence", "non_violence", "no_violence", "nonviolent", "non_violent",
                            "normal")},
}
# Hockey/Movies fights: a flat folder, label from the file-name prefix (longest first).
FLAT_PREFIXES = (("newfi", 1), ("newno", 0), ("fi", 1), ("no", 0))
SUPPORTED_LAYOUTS = (
    "RWF-2000: train|val/Fight|NonFight/* (its val is used as the test split)",
    "SCVD-style and generic splits: <split>/<class>/* with split in train/training, val/valid/validation, "
    "test/testing (any case); with train and test only, validation is carved from train",
    "class folders: <class>/*, e.g. Real-Life-Violence-Situations Violence/V_*.mp4, NonViolence/NV_*.mp4",
    "Hockey/Movies fights: one flat folder of fi*/newfi* (violent) and no*/newno* (non-violent) files",
    f"class folder names (any case): violent = {sorted(k for k, v in CLASS_SYNONYMS.items() if v == 1)}, "
    f"non-violent = {sorted(k for k, v in CLASS_SYNONYMS.items() if v == 0)}",
)
PROBE_COLUMNS = tuple(empty_probe())
MANIFEST_COLUMNS = ("clip_id", "path", "rel_path", "source", "label", "class_name", "split", "dataset_split",
                    "split_origin", "group", "sha1", "duplicate", "duplicate_kind", "duplicate_of", "dup_cluster",
                    "leakage", *PROBE_COLUMNS)
# Two clips whose perceptual hashes differ in at most this share of bits are near-duplicates.
# Measured on the 177 real surveillance clips: re-encodes (other codec, JPEG quality 5,
# a quarter of the size, half the frame rate) stay <= 0.04; clips from different source
# recordings are >= 0.20 apart; a few clips cut from one static camera fall below it, and
# grouping those together is what leakage control wants anyway.
PHASH_MAX_DISTANCE = 0.05
# Seconds a worker may take to start (import OpenCV) before the pool is given up.
WORKER_START_S = 120.0
# Folders a dataset root may wrap its layout in (an unzipped archive); how deep we look.
MAX_WRAPPER_DEPTH = 3


# --------------------------------------------------------------------------- discovery

def _class_label(name: str) -> int | None:
    return CLASS_SYNONYMS.get(re.sub(r"[-\s]", "_", name.strip().lower()))


def _flat_label(name: str) -> int | None:
    lower = name.lower()
    for prefix, label in FLAT_PREFIXES:
        if lower.startswith(prefix):
            return label
    return None


def _entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """Visible sub-folders and files of ``folder``, sorted by name.

    A broken or looping file link is listed as a file, so the audit reports it
    as unusable instead of silently dropping it.
    """
    dirs, files = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            if not entry.name.startswith("."):  # .git, .ipynb_checkpoints, ...
                dirs.append(entry)
        elif entry.is_file() or entry.is_symlink():
            files.append(entry)
    return dirs, files


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_files(folder: Path, seen: set[str], root_real: str, notes: list[str]) -> list[Path]:
    """All files under ``folder``, following each real folder once.

    A symlinked folder that points back into the dataset is skipped: it is a
    loop, or a second path to clips of (possibly) another class. One that points
    outside (data on another disk) is followed.
    """
    files, stack = [], [folder]
    while stack:
        current = stack.pop()
        real = os.path.realpath(current)
        if real in seen:
            continue
        seen.add(real)
        dirs, here = _entries(current)
        files.extend(here)
        for sub in reversed(dirs):
            target = os.path.realpath(sub)
            if sub.is_symlink() and (_inside(target, root_real) or _inside(real, target)):
                notes.append(f"skipped folder link {sub.relative_to(folder).as_posix()!r} in "
                             f"{folder.name}/ -> {target!r}: it points back into the dataset (a loop or a "
                             "second path to the same clips)")
                continue
            stack.append(sub)
    return sorted(files)


def _describe_entries(folder: Path, limit: int = 25) -> str:
    dirs, files = _entries(folder)
    names = [d.name + "/" for d in dirs] + [f.name for f in files]
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    return f"[{shown}]" if names else "[] (empty folder)"


def _unknown_layout(root: Path, folder: Path, why: str) -> ValueError:
    where = f"{str(root)!r}" + (f" (looked inside {str(folder)!r})" if folder != root else "")
    return ValueError(
        f"could not recognise the dataset layout of {where}: {why}. Top-level entries found: "
        f"{_describe_entries(folder)}. Supported layouts:\n  - " + "\n  - ".join(SUPPORTED_LAYOUTS)
        + "\nRename the folders to one of these layouts, or point data_dir at the folder that holds them.")


def _clip_rows(root: Path, files: list[Path], label_of, split: str,
               dataset_split: str) -> tuple[list[dict], int, list[str]]:
    rows, skipped, unlabelled = [], 0, []
    for f in files:
        # README, CSV, thumbnails, and macOS "._name.mp4" resource forks that only
        # look like videos: silently skipped but counted.
        if f.suffix.lower() not in VIDEO_SUFFIXES or f.name.startswith("."):
            skipped += 1
            continue
        label = label_of(f)
        rel = f.relative_to(root).as_posix()
        if label is None:
            unlabelled.append(rel)
            continue
        rows.append({"path": os.path.abspath(f), "rel_path": rel, "label": int(label),
                     "class_name": CLASS_NAMES[int(label)], "split": split, "dataset_split": dataset_split})
    return rows, skipped, unlabelled


def _discover_root(root: Path) -> tuple[list[dict], dict]:
    """Rows and a report for one dataset root."""
    folder, seen = root, set()
    for _ in range(MAX_WRAPPER_DEPTH + 1):
        dirs, files = _entries(folder)
        split_dirs = [d for d in dirs if d.name.lower() in SPLIT_SYNONYMS]
        class_dirs = [d for d in dirs if _class_label(d.name) is not None]
        flat_videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
        if split_dirs or class_dirs or flat_videos or len(dirs) != 1:
            break
        folder = dirs[0]  # a single wrapper folder, e.g. an unzipped archive's top folder
    report = {"layout": "", "notes": [], "skipped_non_video": 0, "unlabelled": []}
    rows: list[dict] = []
    root_real = os.path.realpath(root)

    def add(files, label_of, split="", dataset_split=""):
        new, skipped, unlabelled = _clip_rows(root, files, label_of, split, dataset_split)
        rows.extend(new)
        report["skipped_non_video"] += skipped
        report["unlabelled"].extend(unlabelled)
        return len(new)

    def add_class_folder(class_dir: Path, split="", dataset_split=""):
        found = add(_walk_files(class_dir, seen, root_real, report["notes"]),
                    lambda f, lab=_class_label(class_dir.name): lab, split, dataset_split)
        if not found:
            report["notes"].append(f"class folder {class_dir.relative_to(root).as_posix()!r} holds no video files")

    if split_dirs or class_dirs:
        # Files next to a split/class layout (README, LICENSE, groups.csv) are counted, not clips.
        report["skipped_non_video"] += sum(1 for f in files if f.suffix.lower() not in VIDEO_SUFFIXES)
    if split_dirs and class_dirs:
        raise _unknown_layout(root, folder, "it mixes split folders and class folders at the same level")
    if split_dirs:
        splits = {SPLIT_SYNONYMS[d.name.lower()] for d in split_dirs}
        if len(splits) != len(split_dirs):
            raise _unknown_layout(root, folder, "two folders name the same split (e.g. val and validation)")
        # A dataset with train and val only (RWF-2000) reports results on its val
        # split, so that is our test split; validation is carved from train.
        val_is_test = splits == {"train", "val"}
        class_names = set()
        for split_dir in split_dirs:
            sub_dirs, sub_files = _entries(split_dir)
            report["skipped_non_video"] += sum(1 for f in sub_files if f.suffix.lower() not in VIDEO_SUFFIXES)
            sub_classes = [d for d in sub_dirs if _class_label(d.name) is not None]
            if not sub_classes:
                raise _unknown_layout(root, split_dir, f"split folder {split_dir.name!r} holds no class folders")
            split = SPLIT_SYNONYMS[split_dir.name.lower()]
            for class_dir in sub_classes:
                class_names.add(class_dir.name.lower())
                add_class_folder(class_dir, "test" if (val_is_test and split == "val") else split, split_dir.name)
            ignored = [d.name for d in sub_dirs if d not in sub_classes]
            if ignored:
                report["notes"].append(f"ignored folders in {split_dir.name}/: {ignored}")
        is_rwf = val_is_test and class_names <= {"fight", "nonfight"}
        report["layout"] = "rwf-2000" if is_rwf else "split/class"
        if val_is_test:
            report["notes"].append("dataset has train and val only: its val is used as the test split "
                                   "(the benchmark's reported split); validation is carved from train")
    elif class_dirs:
        for class_dir in class_dirs:
            add_class_folder(class_dir)
        names = {d.name.lower() for d in class_dirs}
        report["layout"] = "real-life-violence-situations" if names == {"violence", "nonviolence"} else "class"
    elif flat_videos:
        add(files, lambda f: _flat_label(f.name))
        report["layout"] = "hockey/movies-flat"
        if not rows:
            raise _unknown_layout(root, folder, "a flat folder of videos, but no file name starts with "
                                                "fi/newfi (violent) or no/newno (non-violent)")
    else:
        raise _unknown_layout(root, folder, "no split folders, class folders or video files found")
    if class_dirs or split_dirs:
        ignored = [d.name for d in dirs if d not in class_dirs and d not in split_dirs]
        if ignored:
            report["notes"].append(f"ignored top-level folders: {ignored}")
    if report["unlabelled"]:
        report["notes"].append(f"{len(report['unlabelled'])} video files have no class in their name and were "
                               f"skipped, e.g. {report['unlabelled'][:3]}")
    return rows, report


def _source_names(roots: list[Path]) -> list[str]:
    names: list[str] = []
    for root in roots:
        name = root.name or "root"
        if name in names:  # two roots with the same folder name: qualify by the parent
            name = f"{root.parent.name}-{name}"
        base, k = name, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _stratified_subsample(clips: pd.DataFrame, max_clips: int, seed: int) -> pd.DataFrame:
    """At most ``max_clips`` rows, proportional per (source, split, label), deterministic."""
    if max_clips <= 0 or max_clips >= len(clips):
        return clips
    rng = np.random.default_rng(seed)
    strata = list(clips.groupby(["source", "split", "label"], sort=True).groups.items())
    sizes = np.array([len(index) for _, index in strata], dtype=float)
    quota = sizes * max_clips / sizes.sum()
    take = np.floor(quota).astype(int)
    # Largest remainders get the leftover slots, so the total is exactly max_clips.
    for i in np.argsort(-(quota - take), kind="stable")[: max_clips - take.sum()]:
        take[i] += 1
    keep = []
    for (_, index), k in zip(strata, take):
        keep.extend(rng.permutation(np.asarray(index))[:k].tolist())
    return clips.loc[sorted(keep)].reset_index(drop=True)


def discover_clips(data_dirs, max_clips: int = 0, seed: int = 0) -> pd.DataFrame:
    """Find labelled clips in one or more dataset roots.

    Args:
        data_dirs: a folder or a list of folders, each in a supported layout
            (see ``SUPPORTED_LAYOUTS``).
        max_clips: if > 0, keep at most this many clips, stratified by source,
            split and class (deterministic for a seed).
        seed: seed of the subsample.
    Returns:
        DataFrame with columns path (absolute), rel_path (relative to its root),
        label (0/1), class_name, split (train/val/test, "" when the dataset has
        none), dataset_split (the split folder name as found) and source (root
        folder name). ``attrs`` holds per-source layouts, notes and the count of
        skipped non-video files.
    Raises:
        ValueError: a folder is missing, a layout is not recognised, or no clip is found.
    """
    if isinstance(data_dirs, (str, os.PathLike)):
        data_dirs = [data_dirs]
    if not data_dirs:
        raise ValueError("discover_clips: data_dirs is empty; give at least one dataset folder")
    roots = [Path(os.path.abspath(d)) for d in data_dirs]
    for root in roots:
        if not root.is_dir():
            raise ValueError(f"dataset folder {str(root)!r} does not exist or is not a folder; fix data_dir")
    if len({os.path.realpath(r) for r in roots}) != len(roots):
        raise ValueError(f"data_dirs lists the same folder twice: {[str(r) for r in roots]}; "
                         "each clip would be counted twice")
    frames, layouts, notes, skipped = [], {}, [], {}
    for root, source in zip(roots, _source_names(roots)):
        rows, report = _discover_root(root)
        frame = pd.DataFrame(rows, columns=["path", "rel_path", "label", "class_name", "split", "dataset_split"])
        frame["source"] = source
        frames.append(frame)
        layouts[source] = report["layout"]
        skipped[source] = report["skipped_non_video"]
        notes.extend(f"{source}: {note}" for note in report["notes"])
    clips = pd.concat(frames, ignore_index=True)
    if clips.empty:
        raise ValueError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) found under {[str(r) for r in roots]}")
    clips["label"] = clips["label"].astype(int)
    clips = clips.sort_values(["source", "rel_path"], kind="stable").reset_index(drop=True)
    clips = _stratified_subsample(clips, max_clips, seed)
    clips.attrs.update({"layouts": layouts, "notes": notes, "skipped_non_video": skipped,
                        "data_dirs": [str(r) for r in roots]})
    return clips


# --------------------------------------------------------------------------- groups

def file_sha1(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """SHA-1 of a file's bytes, read in chunks ("" if it cannot be read).

    Args:
        path: file.
        chunk_bytes: read size.
    Returns:
        Hex digest, or "" for an unreadable file.
    """
    digest = hashlib.sha1()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def _parse_label(value) -> int | None:
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return int(value)
    text = str(value).strip()
    if text in ("0", "1"):
        return int(text)
    if text.lower() in ("violent", "non-violent"):
        return int(text.lower() == "violent")
    return _class_label(text)


def attach_groups(clips: pd.DataFrame, groups_csv: str | os.PathLike | None = None) -> pd.DataFrame:
    """Add a ``group`` column: clips of one group must never span two splits.

    Args:
        clips: from ``discover_clips`` or ``probe_clips`` (needs path, rel_path,
            source, label).
        groups_csv: CSV with columns clip (path relative to the data root, or
            ``<source>/<path>``), label and source_group. None: the group is the
            clip's duplicate cluster (``find_duplicates``: identical bytes, or
            look-alike frames when the clips were probed), so copies share a group.
    Returns:
        A copy with ``group`` (and ``sha1``/duplicate columns when they had to be
        computed). Clips missing from the CSV get a group of their own, with a
        warning; ``attrs["groups_report"]`` counts matches and label disagreements.
    """
    out = clips.copy()
    if groups_csv is None:
        if "dup_cluster" not in out:
            out = find_duplicates(out)
        # An unreadable file hashes to "": give it its own group, not a shared one.
        out["group"] = ["dup:" + c if c else "sha1:" + h if h else f"clip:{s}/{r}" for c, h, s, r in
                        zip(out["dup_cluster"], out["sha1"], out["source"], out["rel_path"])]
        out.attrs["groups_report"] = {"groups_csv": None, "method": "duplicate clusters (identical bytes or "
                                                                    "look-alike frames); other clips alone"}
        return out
    groups_csv = Path(groups_csv)
    if not groups_csv.is_file():
        raise ValueError(f"groups CSV {str(groups_csv)!r} does not exist; fix groups_csv or set it to null")
    table = pd.read_csv(groups_csv, dtype=str, keep_default_na=False)
    missing_cols = {"clip", "source_group"} - set(table.columns)
    if missing_cols:
        raise ValueError(f"groups CSV {str(groups_csv)!r} lacks columns {sorted(missing_cols)}; it has "
                         f"{list(table.columns)}; expected clip, label, source_group")
    table["clip"] = table["clip"].str.strip().str.replace("\\", "/", regex=False).str.lstrip("./")
    if table["clip"].duplicated().any():
        dup = table.loc[table["clip"].duplicated(), "clip"].tolist()[:5]
        raise ValueError(f"groups CSV {str(groups_csv)!r} lists a clip more than once, e.g. {dup}; keep one row each")
    by_clip = table.set_index("clip")
    groups, labels_off, unmatched = [], [], []
    for source, rel, label in zip(out["source"], out["rel_path"], out["label"]):
        key = f"{source}/{rel}" if f"{source}/{rel}" in by_clip.index else rel
        if key in by_clip.index:
            row = by_clip.loc[key]
            groups.append("csv:" + str(row["source_group"]))
            if "label" in by_clip.columns and _parse_label(row["label"]) not in (None, int(label)):
                labels_off.append(f"{source}/{rel} (csv says {row['label']!r})")
        else:
            groups.append(f"clip:{source}/{rel}")
            unmatched.append(f"{source}/{rel}")
    out["group"] = groups
    if unmatched:
        warnings.warn(f"{len(unmatched)} of {len(out)} clips are not in groups CSV {str(groups_csv)!r} and each "
                      f"get a group of their own (they may leak if they share a recording with another clip): "
                      f"{unmatched[:5]}{' ...' if len(unmatched) > 5 else ''}", stacklevel=2)
    if labels_off:
        warnings.warn(f"{len(labels_off)} clips have a different label in groups CSV {str(groups_csv)!r} than "
                      f"their folder says (the folder label is kept): {labels_off[:5]}", stacklevel=2)
    out.attrs["groups_report"] = {"groups_csv": str(groups_csv), "method": "source_group from CSV",
                                  "matched": len(out) - len(unmatched), "not_in_csv": unmatched,
                                  "csv_rows": len(table), "label_disagreements": labels_off}
    return out


# --------------------------------------------------------------------------- probing

def _probe_task(path: str, probe_fn, want_hash: bool) -> dict:
    """Probe (and hash) one clip; never raises, so one odd file cannot end the audit."""
    start = time.perf_counter()
    try:
        info = (probe_fn or probe_video)(path)
    except Exception as err:
        info = {"status": "unusable", "reason": f"probe failed: {type(err).__name__}: {err}"}
    if not isinstance(info, dict):
        info = {"status": "unusable", "reason": f"probe failed: the probe returned {type(info).__name__}, not a dict"}
    if want_hash:
        info["sha1"] = file_sha1(path)
    info["probe_s"] = time.perf_counter() - start
    return info


def _probe_worker(conn, probe_fn, want_hash: bool) -> None:
    """Worker process: say it is ready, then probe each (index, path) received until None."""
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        index, path = task
        conn.send((index, _probe_task(path, probe_fn, want_hash)))


@dataclasses.dataclass
class _Worker:
    process: multiprocessing.Process
    conn: multiprocessing.connection.Connection
    since: float  # start of the process, or of its current task
    ready: bool = False
    task: int | None = None  # index of the clip being probed


class _WorkersCannotStart(RuntimeError):
    """Worker processes die or hang before they can take a clip."""


def _start_worker(context, probe_fn, want_hash: bool) -> _Worker:
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_probe_worker, args=(child_end, probe_fn, want_hash), daemon=True,
                              name="nexara-probe")
    process.start()
    child_end.close()
    return _Worker(process, parent_end, time.monotonic())


def _stop_worker(worker: _Worker, kill: bool) -> None:
    """End a worker: politely when idle, by SIGKILL when it is stuck in a clip."""
    if not kill:
        try:
            worker.conn.send(None)
        except OSError:
            kill = True
    if kill:
        worker.process.kill()
    worker.process.join(timeout=5)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.conn.close()


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _drain(worker: _Worker, results: list, on_done) -> bool:
    """Take every message ``worker`` has sent; False when its pipe is closed (the process died)."""
    try:
        while worker.conn.poll():
            index, info = worker.conn.recv()
            if index == "ready":
                worker.ready, worker.since = True, time.monotonic()
            else:
                results[index], worker.task = info, None
                on_done(index)
    except (EOFError, OSError):
        return False
    return True


def _hand_out(pool: list[_Worker], pending: deque, paths: list[str]) -> None:
    """Give each ready, idle worker the next clip."""
    for w in pool:
        if w.ready and w.task is None and pending:
            w.task, w.since = pending.popleft(), time.monotonic()
            try:
                w.conn.send((w.task, paths[w.task]))
            except OSError:  # it died while idle: the clip goes back; the death is seen later
                pending.appendleft(w.task)
                w.task = None


def _wait_for_news(pool: list[_Worker], timeout_s: float | None) -> None:
    """Block until a worker sends something or dies, or until the next deadline passes."""
    limits = [w.since + (timeout_s if w.ready else WORKER_START_S) for w in pool
              if not w.ready or (w.task is not None and timeout_s is not None)]
    wait_s = max(0.0, min(limits) - time.monotonic()) if limits else None
    multiprocessing.connection.wait([w.conn for w in pool] + [w.process.sentinel for w in pool], wait_s)


def _failure(worker: _Worker, alive: bool, timeout_s: float | None) -> str:
    """Why ``worker`` must be replaced ("" if it is fine); raises if it never started."""
    overdue = time.monotonic() - worker.since
    if not alive:
        worker.process.join(timeout=2)  # its pipe closes a moment before its exit code is known
    if not worker.ready and (not alive or overdue > WORKER_START_S):
        raise _WorkersCannotStart(f"a probe worker {'hung' if alive else 'died'} while starting "
                                  f"({_exit_text(worker.process.exitcode)})")
    if not alive:
        return (f"the decoder crashed on this file (probe worker {_exit_text(worker.process.exitcode)}); "
                "it is likely corrupt")
    if worker.task is not None and timeout_s is not None and overdue > timeout_s:
        return (f"probe timed out after {timeout_s:g} s (the decoder hangs on this file; its worker was "
                "stopped); check the file, or raise probe_timeout_s if it is just very large")
    return ""


def _probe_in_processes(paths: list[str], workers: int, timeout_s: float | None, probe_fn, want_hash: bool,
                        results: list, on_done) -> None:
    """Probe ``paths`` in worker processes, filling ``results`` by index.

    A worker stuck on one clip longer than ``timeout_s`` is killed, the clip is
    recorded as timed out and a fresh worker takes the next clip; a worker that
    crashes (a decoder segfault) costs only its clip.

    Raises:
        _WorkersCannotStart: a worker dies or hangs before it is ready (e.g. in an
            unguarded script that spawn re-runs); ``results`` keeps what was done.
    """
    # spawn: workers start clean, without this process's threads (tqdm, OpenCV's
    # pool) that a fork would copy in an undefined state.
    context = multiprocessing.get_context("spawn")
    pending = deque(range(len(paths)))
    pool = [_start_worker(context, probe_fn, want_hash) for _ in range(min(workers, len(paths)))]
    try:
        while pending or any(w.task is not None for w in pool):
            _hand_out(pool, pending, paths)
            _wait_for_news(pool, timeout_s)
            for k, w in enumerate(pool):
                alive = _drain(w, results, on_done) and w.process.is_alive()
                reason = _failure(w, alive, timeout_s)
                if not reason:
                    continue
                index, spent = w.task, time.monotonic() - w.since
                _stop_worker(w, kill=True)
                if index is not None:
                    results[index] = {"status": "unusable", "reason": reason, "probe_s": spent}
                    on_done(index)
                # Placed here, a replacement cannot be lost if a later worker raises.
                pool[k] = _start_worker(context, probe_fn, want_hash) if pending else None
            pool = [w for w in pool if w is not None]
    finally:
        for w in pool:
            if w is not None:
                _stop_worker(w, kill=w.task is not None or not w.process.is_alive())


def _check_probe_options(workers, probe_timeout_s, probe_fn) -> None:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"probe workers must be an integer >= 0 (0 = probe in this process, no timeout), "
                         f"got {workers!r}")
    if probe_timeout_s is not None and (isinstance(probe_timeout_s, bool)
                                        or not isinstance(probe_timeout_s, (int, float))
                                        or not probe_timeout_s > 0):
        raise ValueError(f"probe_timeout_s must be a positive number of seconds or None (no limit), "
                         f"got {probe_timeout_s!r}")
    if probe_fn is not None:
        if not callable(probe_fn):
            raise ValueError(f"probe_fn must be a function path -> probe dict, got {probe_fn!r}")
        if workers > 0:
            try:
                pickle.dumps(probe_fn)
            except Exception as err:
                raise ValueError(f"probe_fn {probe_fn!r} cannot be sent to worker processes ({err}); use a "
                                 "function defined at module level, or workers=0") from None


def _probe_frame(clips: pd.DataFrame, results: list[dict], want_hash: bool) -> pd.DataFrame:
    """``clips`` with the probe columns (and sha1) from ``results``, with fixed types."""
    defaults = empty_probe()
    out = clips.copy()
    probed = pd.DataFrame(results, index=clips.index)
    for column in (*PROBE_COLUMNS, "sha1") if want_hash else PROBE_COLUMNS:
        default = defaults.get(column, "")
        out[column] = probed[column].fillna(default) if column in probed else default
    for column in ("frames_header", "frames", "width", "height", "bytes"):
        out[column] = out[column].astype(int)
    for column in ("opened", "first_frame_ok", "last_frame_ok"):
        out[column] = out[column].astype(bool)
    for column in ("fps", "duration_s"):
        out[column] = out[column].astype(float)
    return out


def probe_clips(clips: pd.DataFrame, workers: int = 2, progress: bool = True, *,
                probe_timeout_s: float | None = 30.0, probe_fn=None) -> pd.DataFrame:
    """Probe every clip (opens? frames, fps, duration, size, codec, first/last frame, phash) and hash it.

    Args:
        clips: needs a ``path`` column.
        workers: worker processes probing in parallel; 0 probes in this process
            (no timeout possible there: a hanging decoder would hang the audit).
        progress: show a tqdm progress bar.
        probe_timeout_s: a clip whose probe takes longer is abandoned (its worker
            killed) and listed as unusable; None = no limit.
        probe_fn: replaces ``probe_video`` (path -> dict of ``PROBE_COLUMNS``);
            a module-level function when workers > 0.
    Returns:
        A copy with the ``PROBE_COLUMNS`` and ``sha1`` added. ``attrs`` holds
        probe_seconds, probe_clips_per_s, probe_workers, probe_timeout_s,
        probe_timeouts, probe_crashes and slowest_probes.
    Raises:
        ValueError: no path column or bad options.
    """
    from tqdm.auto import tqdm

    if "path" not in clips:
        raise ValueError("probe_clips: clips has no 'path' column; build it with discover_clips")
    _check_probe_options(workers, probe_timeout_s, probe_fn)
    want_hash = "sha1" not in clips
    paths = [str(p) for p in clips["path"]]
    results: list[dict | None] = [None] * len(paths)
    start = time.perf_counter()
    bar = tqdm(total=len(paths), desc="probing clips", unit="clip", disable=not progress)
    try:
        if workers > 0 and paths:
            try:
                _probe_in_processes(paths, workers, probe_timeout_s, probe_fn, want_hash, results,
                                    lambda _: bar.update(1))
            except _WorkersCannotStart as err:
                left = sum(r is None for r in results)
                warnings.warn(f"{err}: probing the remaining {left} clips in this process, without a timeout "
                              "(run the audit from a file with an `if __name__ == '__main__':` guard, or use "
                              "workers=0)", stacklevel=2)
        for index, path in enumerate(paths):
            if results[index] is None:
                results[index] = _probe_task(path, probe_fn, want_hash)
                bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    out = _probe_frame(clips, results, want_hash)
    reasons = out["reason"].astype(str)
    names = (out["source"].astype(str) + "/" + out["rel_path"].astype(str)) if {"source", "rel_path"} <= set(out) \
        else out["path"]
    slowest = sorted(zip((r.get("probe_s", 0.0) for r in results), names), key=lambda t: -t[0])[:5]
    out.attrs.update(clips.attrs)
    out.attrs.update({"probe_seconds": seconds, "probe_clips_per_s": len(paths) / seconds if seconds > 0 else None,
                      "probe_workers": workers, "probe_timeout_s": probe_timeout_s,
                      "probe_timeouts": int(reasons.str.startswith("probe timed out").sum()),
                      "probe_crashes": int(reasons.str.startswith("the decoder crashed").sum()),
                      "slowest_probes": [{"clip": str(c), "seconds": round(float(s), 3)} for s, c in slowest]})
    return out


# --------------------------------------------------------------------------- duplicates

def _perceptual_pairs(phashes: list[str], max_distance: float, block_bytes: int = 32 << 20) -> list[tuple]:
    """(i, j, distance) for every pair of clips whose perceptual hashes are within ``max_distance``.

    All pairs are compared in row blocks of bounded memory; a clip needs at least
    two hashed (non-flat) frames in common with another to be compared.
    """
    k = len(PHASH_POSITIONS)
    rows, values, masks = [], [], []
    for i, text in enumerate(phashes):
        try:
            v, m = parse_phash(text) if isinstance(text, str) else (None, None)
        except ValueError:
            continue
        if v is not None and len(v) == k and m.sum() >= 2:
            rows.append(i)
            values.append(v)
            masks.append(m)
    if len(rows) < 2:
        return []
    values, masks = np.stack(values), np.stack(masks)
    step = max(1, block_bytes // (len(rows) * k * 8))
    pairs = []
    for lo in range(0, len(rows), step):
        # Rows lo..lo+step against columns lo..end: the upper triangle, each pair once.
        both = masks[lo:lo + step, None, :] & masks[None, lo:, :]
        bits = np.where(both, np.bitwise_count(values[lo:lo + step, None, :] ^ values[None, lo:, :]), 0).sum(-1)
        frames = both.sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = bits / (64.0 * frames)
        hit_a, hit_b = np.nonzero((frames >= 2) & (distance <= max_distance))
        for a, b in zip(hit_a.tolist(), hit_b.tolist()):
            if b > a:  # never a clip with itself
                pairs.append((rows[lo + a], rows[lo + b], float(distance[a, b])))
    return pairs


MAX_PAIRS_LISTED = 50  # per cluster in audit.json; a file copied 100 times would list 4950


def _cluster_listing(clusters: list[list[int]], keys: list[str], sha1: list[str],
                     perceptual: list[tuple]) -> list[dict]:
    """Clusters as audit.json shows them: their clips and the pairs that joined them."""
    cluster_of = {r: c for c, rows in enumerate(clusters) for r in rows}
    pairs: list[list[dict]] = [[] for _ in clusters]
    for c, rows in enumerate(clusters):
        by_hash: dict[str, list[int]] = {}
        for r in rows:
            if sha1[r]:
                by_hash.setdefault(sha1[r], []).append(r)
        for same in by_hash.values():  # a chain says it all: a = b, b = c, ...
            pairs[c].extend({"a": keys[a], "b": keys[b], "kind": "exact", "distance": 0.0}
                            for a, b in zip(same, same[1:]))
    for i, j, distance in perceptual:
        if i in cluster_of:
            pairs[cluster_of[i]].append({"a": keys[i], "b": keys[j], "kind": "perceptual",
                                         "distance": round(distance, 4)})
    listing = []
    for c, rows in enumerate(clusters):
        kinds = {p["kind"] for p in pairs[c]}
        listing.append({"cluster": f"dup-{c + 1:04d}", "kind": "+".join(sorted(kinds)),
                        "clips": [keys[r] for r in rows], "pairs": pairs[c][:MAX_PAIRS_LISTED],
                        "pairs_total": len(pairs[c])})
    return listing


def find_duplicates(clips: pd.DataFrame, max_distance: float = PHASH_MAX_DISTANCE) -> pd.DataFrame:
    """Cluster clips that are the same content: identical bytes, or near-identical frames (a re-encode).

    Args:
        clips: needs path, source and rel_path; uses sha1 (computed when
            missing), phash (from ``probe_clips``) and status (only "ok" clips
            are compared when present).
        max_distance: largest share of differing perceptual-hash bits for two
            clips to count as near-duplicates (0 = the same look only).
    Returns:
        A copy with dup_cluster ("dup-0001", ...; "" when the clip has no
        duplicate), duplicate (bool), duplicate_kind ("exact": another clip
        has the same bytes; "perceptual": only look-alikes) and duplicate_of
        ("source/rel_path" of the cluster's best copy: most pixels, then most
        bytes; "" for that one).
        ``attrs["duplicate_clusters"]`` lists each cluster: id, kind ("exact",
        "perceptual" or "exact+perceptual"), clips and the pairs that joined it.
    Raises:
        ValueError: max_distance outside [0, 0.5).
    """
    if isinstance(max_distance, bool) or not isinstance(max_distance, (int, float)) or not 0 <= max_distance < 0.5:
        raise ValueError(f"find_duplicates: max_distance must be in [0, 0.5), got {max_distance!r}; unrelated "
                         f"clips differ in about half their bits (default {PHASH_MAX_DISTANCE})")
    out = clips.copy()
    if "sha1" not in out:
        out["sha1"] = [file_sha1(p) for p in out["path"]]
    keys = (out["source"].astype(str) + "/" + out["rel_path"].astype(str)).tolist()
    usable = (out["status"] == "ok").to_numpy() if "status" in out else np.ones(len(out), bool)
    # Unusable files are never compared: two empty files share a SHA-1 but are no clip.
    sha1 = [h if ok and isinstance(h, str) else "" for h, ok in zip(out["sha1"], usable)]
    phash = [p if ok else "" for p, ok in zip(out["phash"], usable)] if "phash" in out else [""] * len(out)
    perceptual = [(i, j, d) for i, j, d in _perceptual_pairs(phash, max_distance) if not sha1[i] or sha1[i] != sha1[j]]
    units = _union_find_units([sha1], pairs=[(i, j) for i, j, _ in perceptual])
    members: dict[int, list[int]] = {}
    for i, unit in enumerate(units):
        if usable[i]:
            members.setdefault(int(unit), []).append(i)
    # The cluster's first clip, the one the others are "duplicate_of", is its best copy: most
    # pixels, then most bytes (least compressed), then name.
    pixels = (out["width"] * out["height"]).tolist() if {"width", "height"} <= set(out) else [0] * len(out)
    size = out["bytes"].tolist() if "bytes" in out else [0] * len(out)
    clusters = sorted((sorted(rows, key=lambda r: (-pixels[r], -size[r], keys[r]))
                       for rows in members.values() if len(rows) > 1), key=lambda rows: min(keys[r] for r in rows))
    copies = Counter(h for h in sha1 if h)
    cluster_id, kind, first_of = [""] * len(out), [""] * len(out), [""] * len(out)
    for number, rows in enumerate(clusters, start=1):
        for r in rows:
            cluster_id[r] = f"dup-{number:04d}"
            kind[r] = "exact" if sha1[r] and copies[sha1[r]] > 1 else "perceptual"
            first_of[r] = keys[rows[0]] if r != rows[0] else ""
    out["dup_cluster"], out["duplicate_kind"], out["duplicate_of"] = cluster_id, kind, first_of
    out["duplicate"] = out["dup_cluster"] != ""
    out.attrs.update(clips.attrs)
    out.attrs["duplicate_clusters"] = _cluster_listing(clusters, keys, sha1, perceptual)
    out.attrs["duplicate_method"] = {
        "exact": "SHA-1 of the file bytes",
        "perceptual": f"64-bit dHash of {len(PHASH_POSITIONS)} frames at "
                      f"{'/'.join(f'{p:.0%}' for p in PHASH_POSITIONS)} of the clip; near-duplicates differ in at "
                      f"most {max_distance:.0%} of the bits of the frames both hashed (flat frames are not hashed)",
        "max_distance": max_distance}
    return out


# --------------------------------------------------------------------------- splits

def _union_find_units(keys_per_column: list[list[str]], pairs=()) -> np.ndarray:
    """Unit id per row: rows sharing any non-empty key (in any column), or listed as a pair, share a unit."""
    n = len(keys_per_column[0]) if keys_per_column else 0
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i, j):
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    for keys in keys_per_column:
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if not key:
                continue
            if key in first:
                join(i, first[key])
            else:
                first[key] = i
    for i, j in pairs:
        join(i, j)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def _check_fractions(fractions) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or any(not f > 0 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three positive numbers (train, val, test) summing to 1, "
                         f"got {fractions!r}; e.g. (0.7, 0.15, 0.15)")
    return values


# Columns whose shared values tie clips together: none of them may span two splits.
LINK_COLUMNS = ("group", "sha1", "dup_cluster")


def _leakage_flags(df: pd.DataFrame) -> pd.Series:
    """True where the row's group, identical bytes or duplicate cluster appear in more than one split."""
    flags = pd.Series(False, index=df.index)
    for column in LINK_COLUMNS:
        if column in df:
            keys = df[column].fillna("").astype(str)
            spans = df[keys != ""].groupby(keys[keys != ""])["split"].nunique()
            flags |= keys.map(spans).fillna(1).gt(1)
    return flags


def assign_splits(clips: pd.DataFrame, fractions=(0.70, 0.15, 0.15), seed: int = 0) -> pd.DataFrame:
    """Give every clip a train/val/test split, grouped and stratified.

    A dataset's own splits are kept. A source with train and test only gets
    validation carved from its train clips; a source with no splits gets
    ``fractions``. Assignment moves whole units (clips connected by a shared
    group, identical SHA-1 or duplicate cluster), greedily, largest first, to the split that best
    keeps each (source, class) at its target share; the unit order is shuffled
    by ``seed``, so the result is deterministic.

    Args:
        clips: needs label and group (see ``attach_groups``); uses split,
            source, sha1 and dup_cluster when present.
        fractions: train, val, test shares for clips without a split.
        seed: tie-break/shuffle seed.
    Returns:
        A copy with split, dataset_split (input split), split_origin ("dataset",
        "carved" = moved out of the dataset's train split, or "generated") and leakage (the row's group,
        SHA-1 or duplicate cluster is in two splits; only possible when the dataset's own splits leak).
    Raises:
        ValueError: missing columns, bad fractions, a source with splits but no
            train, or too few groups to fill train, val and test.
    """
    fractions = dict(zip(SPLITS, _check_fractions(fractions)))
    for column in ("label", "group"):
        if column not in clips:
            raise ValueError(f"assign_splits: clips has no {column!r} column; "
                             "run discover_clips and attach_groups first")
    df = clips.copy().reset_index(drop=True)
    raw = df["split"].fillna("").astype(str).str.strip().str.lower() if "split" in df else pd.Series("", index=df.index)
    bad = sorted(set(raw) - set(SPLIT_SYNONYMS) - {""})
    if bad:
        raise ValueError(f"assign_splits: unknown split names {bad}; use train/val/test (or leave empty)")
    split = raw.map(lambda s: SPLIT_SYNONYMS.get(s, ""))
    if "dataset_split" not in df:
        df["dataset_split"] = split
    source = df["source"].astype(str) if "source" in df else pd.Series("", index=df.index)
    allowed: list[tuple[str, ...] | None] = [None] * len(df)  # None: the row's split is fixed
    origin = pd.Series("dataset", index=df.index)
    notes = []
    for src, index in source.groupby(source, sort=True).groups.items():
        present = set(split[index]) - {""}
        if present and "train" not in present:
            raise ValueError(f"assign_splits: source {src!r} has splits {sorted(present)} but no train split; "
                             "add its train clips, or clear its split column to make new splits")
        missing = tuple(s for s in SPLITS if s not in present)
        for i in index:
            if split[i] == "":
                allowed[i], origin[i] = SPLITS, "generated"
            elif split[i] == "train" and missing:
                allowed[i] = ("train", *missing)
        if not present:
            notes.append(f"{src}: no splits of its own; made grouped, stratified "
                         f"{'/'.join(f'{fractions[s]:.0%}' for s in SPLITS)} splits")
        elif missing:
            notes.append(f"{src}: {'/'.join(missing)} carved from its train clips (grouped, stratified)")
    units = _union_find_units([df[c].fillna("").astype(str).tolist() for c in LINK_COLUMNS if c in df])
    strata = list(zip(source, df["label"].astype(int)))
    final = split.copy()

    # Targets: each pool row spreads its weight over the splits it may take.
    target: Counter = Counter()
    stratum_total: Counter = Counter()
    for i, choices in enumerate(allowed):
        if choices is None:
            continue
        share = sum(fractions[s] for s in choices)
        for s in choices:
            target[(s, strata[i])] += fractions[s] / share
        stratum_total[strata[i]] += 1
    unit_rows: dict[int, list[int]] = {}
    for i, u in enumerate(units):
        unit_rows.setdefault(int(u), []).append(i)
    assigned: Counter = Counter()
    pool_units = []
    for u, rows in unit_rows.items():
        pool = [i for i in rows if allowed[i] is not None]
        if not pool:
            continue
        fixed = Counter(split[i] for i in rows if allowed[i] is None)
        if fixed:
            # Part of the unit sits in a dataset split: follow it where a row may.
            pinned = fixed.most_common(1)[0][0]
            for i in pool:
                final[i] = pinned if pinned in allowed[i] else split[i] or pinned
                assigned[(final[i], strata[i])] += 1
            continue
        choices = tuple(s for s in SPLITS if all(s in allowed[i] for i in pool)) or ("train",)
        pool_units.append((min(df.at[i, "path"] if "path" in df else str(i) for i in pool), u, pool, choices))
    pool_units.sort()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool_units))
    # Largest units first (they are the hardest to place); the shuffle breaks ties by seed.
    order = sorted(order, key=lambda k: -len(pool_units[k][2]))
    unit_split: dict[int, str] = {}
    for k in order:
        _, u, pool, choices = pool_units[k]
        counts = Counter(strata[i] for i in pool)

        def cost(s):
            delta = sum(((assigned[(s, st)] + c - target[(s, st)]) ** 2 - (assigned[(s, st)] - target[(s, st)]) ** 2)
                        / max(stratum_total[st], 1) for st, c in counts.items())
            deficit = sum(target[(s, st)] - assigned[(s, st)] for st in counts)
            return delta, -deficit, SPLITS.index(s)

        best = min(choices, key=cost)
        unit_split[k] = best
        for st, c in counts.items():
            assigned[(best, st)] += c
    # Repair: a split the pools should produce but that stayed empty takes the
    # smallest movable unit from the split holding the most units.
    for s in SPLITS:
        if (final == s).any() or any(unit_split.get(k) == s for k in unit_split):
            continue
        movable = [k for k in unit_split if s in pool_units[k][3]]
        per_split = Counter(unit_split[k] for k in movable)
        movable = [k for k in movable if per_split[unit_split[k]] >= 2]
        if not movable:
            continue
        k = min(movable, key=lambda m: (len(pool_units[m][2]), -per_split[unit_split[m]], m))
        unit_split[k] = s
    for k, s in unit_split.items():
        for i in pool_units[k][2]:
            final[i] = s
    df["split"] = final
    # "carved": a dataset train clip moved to a split the dataset lacked.
    origin[(split != "") & (final != split)] = "carved"
    df["split_origin"] = origin
    empty = [s for s in SPLITS if not (df["split"] == s).any()]
    if empty:
        raise ValueError(f"assign_splits: split(s) {empty} are empty: only {len(set(units))} groups of clips "
                         f"({len(df)} clips) and a group cannot be divided; add clips or groups, or check that "
                         "the groups CSV does not put everything in one group")
    for src in sorted(set(source)):
        in_source = df[source == src]
        lacking = [s for s in SPLITS if not (in_source["split"] == s).any()]
        if lacking:
            warnings.warn(f"source {src!r} has no clips in split(s) {lacking} (too few groups)", stacklevel=2)
    df["leakage"] = _leakage_flags(df)
    if df["leakage"].any():
        leaked = sorted(df.loc[df["leakage"], "group"].unique())
        warnings.warn(f"leakage: {int(df['leakage'].sum())} clips in {len(leaked)} groups (or duplicate clusters) "
                      f"appear in more than one of the dataset's own splits, e.g. {leaked[:5]}; results on "
                      "these splits are optimistic", stacklevel=2)
        notes.append(f"leakage in the dataset's own splits: {int(df['leakage'].sum())} clips, groups {leaked[:20]}")
    df.attrs.update(clips.attrs)
    df.attrs["split_notes"] = notes
    return df


# --------------------------------------------------------------------------- manifest

def make_clip_id(source: str, rel_path: str) -> str:
    """A stable, filesystem-safe id for a clip: readable name plus a short hash.

    Args:
        source: dataset source name.
        rel_path: path relative to the source root.
    Returns:
        e.g. ``surv-fight-dev__fight__fi001.mp4-1a2b3c4d``.
    """
    key = f"{source}/{rel_path}"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key.replace("/", "__"))[-80:]
    # The hash keeps ids unique when sanitising or truncation maps two paths together.
    return f"{readable}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:8]}"


def _counts(df: pd.DataFrame, by: str) -> dict:
    table = df.groupby([by, "class_name"]).size().unstack(fill_value=0)
    return {str(k): {str(c): int(v) for c, v in row.items()} for k, row in table.iterrows()}


def _imbalance(df: pd.DataFrame) -> float | None:
    counts = df["label"].value_counts()
    if len(counts) < 2:
        return None  # one class only: the ratio is undefined
    return float(counts.max() / counts.min())


# Clusters, leaks and warnings listed in audit.json; the counts beside them are always complete.
MAX_LISTED = 200


def _clip_facts(manifest: pd.DataFrame) -> dict[str, dict]:
    """Per "source/rel_path": what a reader of audit.json needs to find and judge the clip."""
    keys = manifest["source"].astype(str) + "/" + manifest["rel_path"].astype(str)
    return {k: {"clip": k, "path": p, "split": s, "dataset_split": d, "label": int(lab),
                "kind": kind or None}
            for k, p, s, d, lab, kind in zip(keys, manifest["path"], manifest["split"], manifest["dataset_split"],
                                             manifest["label"], manifest["duplicate_kind"])}


def _duplicate_report(manifest: pd.DataFrame, clusters: list[dict], method: dict) -> dict:
    """Every duplicate cluster with its clips' splits and labels, and whether it stays in one split."""
    facts = _clip_facts(manifest)
    listed = []
    for cluster in clusters:
        clips = [facts[k] for k in cluster["clips"] if k in facts]
        splits = sorted({c["split"] for c in clips})
        listed.append({"cluster": cluster["cluster"], "kind": cluster["kind"], "splits": splits,
                       "same_split": len(splits) == 1, "labels_disagree": len({c["label"] for c in clips}) > 1,
                       "clips": clips, "pairs": cluster["pairs"], "pairs_total": cluster["pairs_total"]})
    kinds = Counter(c["kind"] for c in listed)
    return {"method": method, "clusters": len(listed), "sets": len(listed), "clips": int(manifest["duplicate"].sum()),
            "exact_clusters": kinds["exact"], "perceptual_clusters": kinds["perceptual"],
            "mixed_clusters": kinds["exact+perceptual"],
            "within_one_split": sum(c["same_split"] for c in listed),
            "across_splits": sum(not c["same_split"] for c in listed),
            "label_conflicts": [c["cluster"] for c in listed if c["labels_disagree"]],
            "list": listed[:MAX_LISTED]}


def _leakage_report(manifest: pd.DataFrame, duplicates: dict) -> dict:
    """What leaks between splits: duplicate clusters, then groups (source recordings) not explained by one."""
    facts = _clip_facts(manifest)
    items, covered = [], set()
    for cluster in duplicates["list"]:
        if not cluster["same_split"]:
            items.append({"kind": cluster["kind"], "cluster": cluster["cluster"], "splits": cluster["splits"],
                          "clips": [{k: c[k] for k in ("clip", "split", "dataset_split")} for c in cluster["clips"]]})
            covered.update(c["clip"] for c in cluster["clips"])
    leaked = manifest[manifest["leakage"]]
    keys = leaked["source"].astype(str) + "/" + leaked["rel_path"].astype(str)
    for group, index in keys.groupby(leaked["group"]).groups.items():
        members = keys[index].tolist()
        splits = sorted({facts[k]["split"] for k in members})
        if len(splits) > 1 and not set(members) <= covered:
            items.append({"kind": "same group", "group": str(group), "splits": splits,
                          "clips": [{k: facts[m][k] for k in ("clip", "split", "dataset_split")} for m in members]})
    return {"clips": int(len(leaked)), "groups": sorted(leaked["group"].astype(str).unique().tolist())[:50],
            "items_total": len(items), "items": items[:MAX_LISTED]}


def _warning_report(manifest: pd.DataFrame) -> dict:
    """Non-fatal probe findings: counted by kind (numbers removed) and listed per clip."""
    with_warnings = manifest[manifest["warnings"].astype(str) != ""]
    kinds = Counter(re.sub(r"\d+(\.\d+)?", "N", w.split(":")[0])
                    for text in with_warnings["warnings"] for w in str(text).split("; "))
    return {"clips": int(len(with_warnings)), "by_kind": dict(kinds.most_common()),
            "list": [{"clip": f"{s}/{r}", "warnings": w} for s, r, w in
                     zip(with_warnings["source"], with_warnings["rel_path"], with_warnings["warnings"])][:MAX_LISTED]}


def _data_notes(manifest: pd.DataFrame, duplicates: dict) -> list[str]:
    """Findings about the usable data a reader must see, also raised as warnings."""
    notes = []
    missing = sorted({0, 1} - set(manifest["label"]))
    if missing:
        notes.append(f"only one class is usable: no {CLASS_NAMES[missing[0]]} clips; a classifier needs both")
    if duplicates["label_conflicts"]:
        notes.append(f"duplicate clusters whose clips have different labels (the same content labelled both "
                     f"ways; fix the labels): {duplicates['label_conflicts'][:20]}")
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return notes


def build_manifest(data_dirs, groups_csv=None, fractions=(0.70, 0.15, 0.15), seed: int = 0, workers: int = 2,
                   max_clips: int = 0, progress: bool = True, *, probe_timeout_s: float | None = 30.0,
                   probe_fn=None, max_phash_distance: float = PHASH_MAX_DISTANCE
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Discover, probe, find duplicates, group and split: the whole audit in one call.

    Args:
        data_dirs: dataset folder(s).
        groups_csv: optional CSV (clip, label, source_group); None groups
            duplicate clusters (identical bytes or look-alike frames).
        fractions: train/val/test shares for data without splits.
        seed: seed for subsampling and split assignment.
        workers: probe processes (0 = in this process, without a timeout).
        max_clips: if > 0, a stratified subsample of this many clips.
        progress: show a progress bar while probing.
        probe_timeout_s: seconds one clip's probe may take before it is listed
            as unusable (None = no limit).
        probe_fn: replaces ``probe_video`` (see ``probe_clips``).
        max_phash_distance: near-duplicate threshold (see ``find_duplicates``).
    Returns:
        (manifest, unusable, summary): manifest has ``MANIFEST_COLUMNS``, one
        row per usable clip; unusable has path, rel_path, source, label, reason;
        summary is a JSON-ready dict of counts, imbalance, duplicates (which
        clusters, with paths, splits and kind), leakage (which clips), probe
        warnings, throughput and notes.
    Raises:
        ValueError: no usable clip, or any error of the steps above.
    """
    fractions = _check_fractions(fractions)
    clips = discover_clips(data_dirs, max_clips=max_clips, seed=seed)
    found = dict(clips.attrs)
    # Probe before grouping: the probe pool hashes files in parallel, and the
    # hashes are what groups clips when there is no groups CSV.
    probed = probe_clips(clips, workers=workers, progress=progress, probe_timeout_s=probe_timeout_s,
                         probe_fn=probe_fn)
    deduped = find_duplicates(probed, max_distance=max_phash_distance)
    grouped = attach_groups(deduped, groups_csv)
    usable = grouped["status"] == "ok"
    unusable = grouped.loc[~usable, ["path", "rel_path", "source", "label", "reason"]].reset_index(drop=True)
    if not usable.any():
        reasons = Counter(unusable["reason"]).most_common(5)
        raise ValueError(f"none of the {len(grouped)} clips found under {found['data_dirs']} is usable; "
                         f"most common reasons: {reasons}. See the files with probe_video(path)")
    manifest = assign_splits(grouped[usable], fractions=fractions, seed=seed)
    manifest["clip_id"] = [make_clip_id(s, r) for s, r in zip(manifest["source"], manifest["rel_path"])]
    split_notes = manifest.attrs.get("split_notes", [])
    manifest = manifest[list(MANIFEST_COLUMNS)].reset_index(drop=True)
    duplicates = _duplicate_report(manifest, deduped.attrs["duplicate_clusters"], deduped.attrs["duplicate_method"])
    seconds = probed.attrs.get("probe_seconds", 0.0)
    summary = {
        "data_dirs": found["data_dirs"],
        "groups_csv": str(groups_csv) if groups_csv is not None else None,
        "layouts": found["layouts"],
        "seed": seed,
        "fractions": dict(zip(SPLITS, fractions)),
        "clips_found": int(len(grouped)),
        "clips_usable": int(len(manifest)),
        "clips_unusable": int(len(unusable)),
        "unusable_reasons": dict(Counter(unusable["reason"])),
        "non_video_files_skipped": found["skipped_non_video"],
        "counts_by_split": _counts(manifest, "split"),
        "counts_by_source": _counts(manifest, "source"),
        "counts_by_source_split": {src: _counts(g, "split") for src, g in manifest.groupby("source")},
        "imbalance_ratio": _imbalance(manifest),
        "imbalance_ratio_by_split": {s: _imbalance(g) for s, g in manifest.groupby("split")},
        "groups": int(manifest["group"].nunique()),
        "duplicates": duplicates,
        "leakage": _leakage_report(manifest, duplicates),
        "probe_warnings": _warning_report(manifest),
        "duration_s": {"total": float(manifest["duration_s"].sum(skipna=True)),
                       "median": float(manifest["duration_s"].median(skipna=True))},
        "probe_seconds": float(seconds),
        "probe_clips_per_s": float(len(grouped) / seconds) if seconds > 0 else None,
        "probe_workers": workers,
        "probe_timeout_s": probe_timeout_s,
        "probe_timeouts": probed.attrs.get("probe_timeouts", 0),
        "probe_crashes": probed.attrs.get("probe_crashes", 0),
        "slowest_probes": probed.attrs.get("slowest_probes", []),
        "groups_report": grouped.attrs.get("groups_report", {}),
        "notes": found["notes"] + split_notes + _data_notes(manifest, duplicates),
    }
    return manifest, unusable, summary


def write_audit(manifest: pd.DataFrame, unusable: pd.DataFrame, summary: dict,
                artifacts_dir: str | os.PathLike) -> dict[str, str]:
    """Write manifest.csv, unusable.csv and audit.json atomically.

    Args:
        manifest, unusable, summary: from ``build_manifest``.
        artifacts_dir: folder to write into (created if missing).
    Returns:
        {"manifest": path, "unusable": path, "audit": path}.
    """
    folder = Path(artifacts_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"manifest": folder / "manifest.csv", "unusable": folder / "unusable.csv", "audit": folder / "audit.json"}
    write_atomic(paths["manifest"], lambda f: manifest.to_csv(f, index=False))
    write_atomic(paths["unusable"], lambda f: unusable.to_csv(f, index=False))
    write_atomic(paths["audit"], lambda f: json.dump(to_jsonable(summary), f, indent=2, allow_nan=False))
    return {k: str(v) for k, v in paths.items()}


# --------------------------------------------------------------------------- figures

def _plain(text: str, limit: int = 48) -> str:
    """Title text shown literally: '$' would start matplotlib mathtext."""
    text = str(text)
    if len(text) > limit:
        text = "..." + text[-(limit - 3):]
    return text.replace("$", r"\$")


def _class_bars(ax, df: pd.DataFrame, by: str, title: str) -> None:
    table = df.groupby([by, "label"]).size().unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
    if by == "split":
        table = table.reindex([s for s in SPLITS if s in table.index])
    x = np.arange(len(table))
    for offset, label, color in ((-0.2, 0, "tab:blue"), (0.2, 1, "tab:red")):
        bars = ax.bar(x + offset, table[label].to_numpy(), width=0.4, label=CLASS_NAMES[label], color=color)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, [_plain(v, 24) for v in table.index], rotation=20 if len(x) > 3 else 0)
    ax.set_title(title)
    ax.set_ylabel("clips")
    ax.legend()


def class_balance_figure(manifest: pd.DataFrame):
    """Bar charts of clips per class, per split and per source.

    Args:
        manifest: from ``build_manifest``.
    Returns:
        matplotlib Figure.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_split, ax_source = fig.subplots(1, 2)
    _class_bars(ax_split, manifest, "split", "clips per class and split")
    _class_bars(ax_source, manifest, "source", "clips per class and source")
    return fig


def duration_figure(manifest: pd.DataFrame):
    """Distributions of duration (per class), frame rate and resolution.

    Args:
        manifest: from ``build_manifest``.
    Returns:
        matplotlib Figure.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 4), layout="constrained")
    ax_dur, ax_fps, ax_res = fig.subplots(1, 3)
    durations = manifest["duration_s"].astype(float)
    finite = durations[np.isfinite(durations)]
    bins = np.linspace(finite.min(), finite.max(), 25) if len(finite) and finite.max() > finite.min() else 10
    for label, color in ((0, "tab:blue"), (1, "tab:red")):
        values = durations[(manifest["label"] == label) & np.isfinite(durations)]
        if len(values):
            ax_dur.hist(values, bins=bins, alpha=0.6, color=color, label=CLASS_NAMES[label])
    ax_dur.set(title="clip duration", xlabel="seconds", ylabel="clips")
    ax_dur.legend()
    fps = manifest["fps"].astype(float).round(2).dropna().value_counts().sort_index()
    ax_fps.bar([f"{v:g}" for v in fps.index], fps.to_numpy(), color="tab:gray")
    ax_fps.set(title="frame rate", xlabel="fps", ylabel="clips")
    res = (manifest["width"].astype(str) + "x" + manifest["height"].astype(str)).value_counts().head(12)
    ax_res.barh(res.index[::-1], res.to_numpy()[::-1], color="tab:green")
    ax_res.set(title="resolution (most common)", xlabel="clips")
    return fig


def frame_grid_figure(manifest: pd.DataFrame, per_class: int = 4, frames: int = 4, seed: int = 0):
    """Frames sampled evenly from a few random clips of each class.

    Args:
        manifest: from ``build_manifest`` (needs path, label, frames).
        per_class: clips shown per class (rows).
        frames: frames shown per clip (columns).
        seed: which clips are drawn.
    Returns:
        matplotlib Figure; a clip that fails to decode shows the reason instead.
    """
    from matplotlib.figure import Figure

    if per_class < 1 or frames < 1:
        raise ValueError(f"frame_grid_figure: per_class and frames must be >= 1, got {per_class}, {frames}")
    rng = np.random.default_rng(seed)
    picks = []
    for label in (1, 0):
        rows = manifest[manifest["label"] == label].sort_values("path")
        chosen = rng.choice(len(rows), size=min(per_class, len(rows)), replace=False) if len(rows) else []
        picks.extend(rows.iloc[sorted(chosen)].itertuples())
    if not picks:
        raise ValueError("frame_grid_figure: the manifest has no clips to show")
    fig = Figure(figsize=(2.2 * frames, 1.9 * len(picks)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(picks), frames, squeeze=False))
    for row, clip in zip(axes, picks):
        name = f"{CLASS_NAMES[int(clip.label)]} | {clip.source}/{clip.rel_path}"
        try:
            n = int(clip.frames) if int(clip.frames) > 0 else 1
            images = read_frames(clip.path, sample_frame_indices(n, frames), size=(160, 120))
        except (VideoReadError, ValueError, OSError) as err:
            images, failure = None, str(err)
        for j, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if images is not None:
                ax.imshow(images[j])
            elif j == 0:
                ax.text(0.02, 0.5, _plain(failure, 120), fontsize=6, wrap=True, transform=ax.transAxes)
        row[0].set_title(_plain(name), fontsize=8, loc="left", color="tab:red" if clip.label == 1 else "tab:blue")
    return fig
