"""Stage 01, data audit: find clips, probe them, group duplicates, make splits.

The manifest this module writes is the single source of truth for later
stages: one row per usable clip with its label, split, source, group and probe
facts. Notebook 01 calls, in order::

    manifest, unusable, summary = build_manifest(data_dirs, groups_csv, ...)
    write_audit(manifest, unusable, summary, artifacts_dir)
    class_balance_figure(manifest); duration_figure(manifest); frame_grid_figure(manifest)

Splits are always grouped: clips that share a group (a source recording from a
groups CSV, or identical file bytes) never land in two splits, because a model
that saw a near-copy of a test clip in training reports inflated accuracy.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import re
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.runinfo import to_jsonable
from nexara_lib.video import VIDEO_SUFFIXES, VideoReadError, probe_video, read_frames, sample_frame_indices

CLASS_NAMES = {0: "non-violent", 1: "violent"}
SPLITS = ("train", "val", "test")
# Split folder names as datasets spell them -> our split name.
SPLIT_SYNONYMS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "testing": "test"}
# Class folder names (lower case, '-' and ' ' read as '_') -> label.
CLASS_SYNONYMS = {
    **{name: 1 for name in ("fight", "violence", "violent")},
    **{name: 0 for name in ("nofight", "nonfight", "non_fight", "nonviolence", "non_violence",
                            "nonviolent", "non_violent", "normal")},
}
# Hockey/Movies fights: a flat folder, label from the file-name prefix (longest first).
FLAT_PREFIXES = (("newfi", 1), ("newno", 0), ("fi", 1), ("no", 0))
SUPPORTED_LAYOUTS = (
    "RWF-2000: train|val/Fight|NonFight/* (its val is used as the test split)",
    "generic splits: <split>/<class>/* with split in train/training, val/valid/validation, test/testing",
    "class folders: <class>/*, e.g. Real-Life-Violence-Situations Violence/V_*.mp4, NonViolence/NV_*.mp4",
    "Hockey/Movies fights: one flat folder of fi*/newfi* (violent) and no*/newno* (non-violent) files",
    f"class folder names (any case): violent = {sorted(k for k, v in CLASS_SYNONYMS.items() if v == 1)}, "
    f"non-violent = {sorted(k for k, v in CLASS_SYNONYMS.items() if v == 0)}",
)
PROBE_COLUMNS = ("opened", "codec", "frames_header", "frames", "fps", "duration_s", "width", "height",
                 "bytes", "status", "reason")
MANIFEST_COLUMNS = ("clip_id", "path", "rel_path", "source", "label", "class_name", "split", "dataset_split",
                    "split_origin", "group", "sha1", "duplicate", "leakage", *PROBE_COLUMNS)
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
    """Visible sub-folders and files of ``folder``, sorted by name."""
    dirs, files = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            if not entry.name.startswith("."):  # .git, .ipynb_checkpoints, ...
                dirs.append(entry)
        elif entry.is_file():
            files.append(entry)
    return dirs, files


def _walk_files(folder: Path, seen: set[str]) -> list[Path]:
    """All files under ``folder``; symlinked folders are followed once (no loops)."""
    files, stack = [], [folder]
    while stack:
        current = stack.pop()
        real = os.path.realpath(current)
        if real in seen:
            continue
        seen.add(real)
        dirs, here = _entries(current)
        files.extend(here)
        stack.extend(reversed(dirs))
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

    def add(files, label_of, split="", dataset_split=""):
        new, skipped, unlabelled = _clip_rows(root, files, label_of, split, dataset_split)
        rows.extend(new)
        report["skipped_non_video"] += skipped
        report["unlabelled"].extend(unlabelled)

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
                add(_walk_files(class_dir, seen), lambda f, lab=_class_label(class_dir.name): lab,
                    "test" if (val_is_test and split == "val") else split, split_dir.name)
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
            add(_walk_files(class_dir, seen), lambda f, lab=_class_label(class_dir.name): lab)
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
        clips: from ``discover_clips`` (needs path, rel_path, source, label).
        groups_csv: CSV with columns clip (path relative to the data root, or
            ``<source>/<path>``), label and source_group. None: the group is the
            SHA-1 of the file bytes, so exact duplicates share a group.
    Returns:
        A copy with ``group`` (and ``sha1`` when it had to be computed). Clips
        missing from the CSV get a group of their own, with a warning;
        ``attrs["groups_report"]`` counts matches and label disagreements.
    """
    out = clips.copy()
    if groups_csv is None:
        if "sha1" not in out:
            out["sha1"] = [file_sha1(p) for p in out["path"]]
        # An unreadable file hashes to "": give it its own group, not a shared one.
        out["group"] = ["sha1:" + h if h else f"clip:{s}/{r}" for h, s, r in
                        zip(out["sha1"], out["source"], out["rel_path"])]
        out.attrs["groups_report"] = {"groups_csv": None, "method": "sha1 of file bytes"}
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

def _probe_task(args: tuple[str, bool]) -> dict:
    path, want_hash = args
    try:
        info = probe_video(path)
    except Exception as err:  # keep the pool alive: one odd file must not end the audit
        info = {"opened": False, "status": "unusable", "reason": f"probe failed: {type(err).__name__}: {err}"}
    if want_hash:
        info["sha1"] = file_sha1(path)
    return info


def probe_clips(clips: pd.DataFrame, workers: int = 2, progress: bool = True) -> pd.DataFrame:
    """Probe every clip (opens? frames, fps, duration, size, codec) and hash it.

    Args:
        clips: needs a ``path`` column.
        workers: processes probing in parallel (<= 1: in this process).
        progress: show a tqdm progress bar.
    Returns:
        A copy with the ``PROBE_COLUMNS`` and ``sha1`` added;
        ``attrs["probe_seconds"]`` and ``attrs["probe_clips_per_s"]`` say how long it took.
    """
    from tqdm.auto import tqdm

    if "path" not in clips:
        raise ValueError("probe_clips: clips has no 'path' column; build it with discover_clips")
    want_hash = "sha1" not in clips
    tasks = [(str(p), want_hash) for p in clips["path"]]
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc="probing clips", unit="clip", disable=not progress)
    try:
        if workers <= 1 or len(tasks) < 2:
            results = []
            for task in tasks:
                results.append(_probe_task(task))
                bar.update(1)
        else:
            # spawn: workers start clean, without this process's threads (tqdm,
            # OpenCV's pool) which a fork would copy in an undefined state.
            context = multiprocessing.get_context("spawn")
            chunk = max(1, min(16, len(tasks) // (workers * 8)))
            results = []
            try:
                with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                    for result in pool.map(_probe_task, tasks, chunksize=chunk):
                        results.append(result)
                        bar.update(1)
            except concurrent.futures.process.BrokenProcessPool as err:
                # Workers cannot start when the calling script cannot be re-imported
                # (code piped to python, an unguarded script) or when one crashed;
                # results arrive in order, so finish the rest here.
                warnings.warn(f"probe worker processes failed ({err}); probing the remaining "
                              f"{len(tasks) - len(results)} clips in this process", stacklevel=2)
                for task in tasks[len(results):]:
                    results.append(_probe_task(task))
                    bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    probed = pd.DataFrame(results, index=clips.index)
    out = clips.copy()
    defaults = {"opened": False, "codec": "", "frames_header": 0, "frames": 0, "fps": float("nan"),
                "duration_s": float("nan"), "width": 0, "height": 0, "bytes": 0, "status": "unusable", "reason": ""}
    for column in (*PROBE_COLUMNS, "sha1") if want_hash else PROBE_COLUMNS:
        values = probed[column] if column in probed else pd.Series(defaults.get(column, ""), index=out.index)
        out[column] = values.fillna(defaults[column]) if column in defaults else values.fillna("")
    for column in ("frames_header", "frames", "width", "height", "bytes"):
        out[column] = out[column].astype(int)
    out["opened"] = out["opened"].astype(bool)
    out.attrs.update(clips.attrs)
    out.attrs.update({"probe_seconds": seconds, "probe_clips_per_s": len(tasks) / seconds if seconds > 0 else None,
                      "probe_workers": workers})
    return out


# --------------------------------------------------------------------------- splits

def _union_find_units(keys_per_column: list[list[str]]) -> np.ndarray:
    """Unit id per row: rows sharing any non-empty key (in any column) share a unit."""
    n = len(keys_per_column[0]) if keys_per_column else 0
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for keys in keys_per_column:
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if not key:
                continue
            if key in first:
                a, b = find(i), find(first[key])
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first[key] = i
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


def _leakage_flags(df: pd.DataFrame) -> pd.Series:
    """True where the row's group, or its identical bytes, appear in more than one split."""
    flags = pd.Series(False, index=df.index)
    for column in ("group", "sha1"):
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
    group or identical SHA-1), greedily, largest first, to the split that best
    keeps each (source, class) at its target share; the unit order is shuffled
    by ``seed``, so the result is deterministic.

    Args:
        clips: needs label and group (see ``attach_groups``); uses split,
            source and sha1 when present.
        fractions: train, val, test shares for clips without a split.
        seed: tie-break/shuffle seed.
    Returns:
        A copy with split, dataset_split (input split), split_origin ("dataset",
        "carved" = moved out of the dataset's train split, or "generated") and leakage (the row's group or
        SHA-1 is in two splits; only possible when the dataset's own splits leak).
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
    sha1 = df["sha1"].fillna("").astype(str).tolist() if "sha1" in df else [""] * len(df)
    units = _union_find_units([df["group"].astype(str).tolist(), sha1])
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
        warnings.warn(f"leakage: {int(df['leakage'].sum())} clips in {len(leaked)} groups (or identical files) "
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


def build_manifest(data_dirs, groups_csv=None, fractions=(0.70, 0.15, 0.15), seed: int = 0, workers: int = 2,
                   max_clips: int = 0, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Discover, probe, group and split: the whole audit in one call.

    Args:
        data_dirs: dataset folder(s).
        groups_csv: optional CSV (clip, label, source_group); None groups identical files.
        fractions: train/val/test shares for data without splits.
        seed: seed for subsampling and split assignment.
        workers: probe processes.
        max_clips: if > 0, a stratified subsample of this many clips.
        progress: show a progress bar while probing.
    Returns:
        (manifest, unusable, summary): manifest has ``MANIFEST_COLUMNS``, one
        row per usable clip; unusable has path, rel_path, source, label, reason;
        summary is a JSON-ready dict of counts, imbalance, duplicates, leakage,
        timings and notes.
    Raises:
        ValueError: no usable clip, or any error of the steps above.
    """
    fractions = _check_fractions(fractions)
    clips = discover_clips(data_dirs, max_clips=max_clips, seed=seed)
    found = dict(clips.attrs)
    # Probe before grouping: the probe pool hashes files in parallel, and the
    # hashes are what groups clips when there is no groups CSV.
    probed = probe_clips(clips, workers=workers, progress=progress)
    grouped = attach_groups(probed, groups_csv)
    usable = grouped["status"] == "ok"
    unusable = grouped.loc[~usable, ["path", "rel_path", "source", "label", "reason"]].reset_index(drop=True)
    if not usable.any():
        reasons = Counter(unusable["reason"]).most_common(5)
        raise ValueError(f"none of the {len(grouped)} clips found under {found['data_dirs']} is usable; "
                         f"most common reasons: {reasons}. See the files with probe_video(path)")
    manifest = assign_splits(grouped[usable], fractions=fractions, seed=seed)
    manifest["clip_id"] = [make_clip_id(s, r) for s, r in zip(manifest["source"], manifest["rel_path"])]
    manifest["duplicate"] = manifest["sha1"].ne("") & manifest["sha1"].duplicated(keep=False)
    manifest = manifest[list(MANIFEST_COLUMNS)]

    dup_sets = [sorted(g["source"] + "/" + g["rel_path"]) for _, g in
                manifest[manifest["duplicate"]].groupby("sha1")]
    leaked = manifest[manifest["leakage"]]
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
        "duplicates": {"sets": len(dup_sets), "clips": int(manifest["duplicate"].sum()), "examples": dup_sets[:10]},
        "leakage": {"clips": int(len(leaked)), "groups": sorted(leaked["group"].unique().tolist())[:50]},
        "duration_s": {"total": float(manifest["duration_s"].sum(skipna=True)),
                       "median": float(manifest["duration_s"].median(skipna=True))},
        "probe_seconds": float(seconds),
        "probe_clips_per_s": float(len(grouped) / seconds) if seconds > 0 else None,
        "probe_workers": workers,
        "groups_report": grouped.attrs.get("groups_report", {}),
        "notes": found["notes"] + manifest.attrs.get("split_notes", []),
    }
    return manifest.reset_index(drop=True), unusable, summary


def _atomic_write(path: Path, write) -> None:
    """Write via a temp file in the same folder, then rename: readers never see half a file."""
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False, encoding="utf-8", newline="")
    try:
        with handle:
            write(handle)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


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
    _atomic_write(paths["manifest"], lambda f: manifest.to_csv(f, index=False))
    _atomic_write(paths["unusable"], lambda f: unusable.to_csv(f, index=False))
    _atomic_write(paths["audit"], lambda f: json.dump(to_jsonable(summary), f, indent=2, allow_nan=False))
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
