"""Finding labelled clips on disk: the dataset layouts we know (split and class folders, flat
Hockey/Movies folders), ``discover_clips`` and the clip id (``make_clip_id``) later stages use.

Owns the split names (``SPLITS``) and the folder-name synonyms for splits and classes.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from nexara_lib.labels import CLASS_NAMES
from nexara_lib.video.probe import VIDEO_SUFFIXES

SPLITS = ("train", "val", "test")
# Split folder names as datasets spell them -> our split name.
SPLIT_SYNONYMS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Class folder names (lower case, '-' and ' ' read as '_') -> label.
CLASS_SYNONYMS = {
    **{name: 1 for name in ("fight", "fights", "violence", "violent")},
    **{
        name: 0
        for name in (
            "nofight",
            "nofights",
            "no_fight",
            "no_fights",
            "nonfight",
            "nonfights",
            "non_fight",
            "non_fights",
            "nonviolence",
            "non_violence",
            "no_violence",
            "nonviolent",
            "non_violent",
            "normal",
        )
    },
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
# Folders a dataset root may wrap its layout in (an unzipped archive); how deep we look.
MAX_WRAPPER_DEPTH = 3


def class_label(name: str) -> int | None:
    """The label (0/1) a class folder name stands for, in any case and spelling; None if it names no class."""
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
                notes.append(
                    f"skipped folder link {sub.relative_to(folder).as_posix()!r} in "
                    f"{folder.name}/ -> {target!r}: it points back into the dataset (a loop or a "
                    "second path to the same clips)"
                )
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
        f"{_describe_entries(folder)}. Supported layouts:\n  - "
        + "\n  - ".join(SUPPORTED_LAYOUTS)
        + "\nRename the folders to one of these layouts, or point data_dir at the folder that holds them."
    )


def _clip_rows(
    root: Path, files: list[Path], label_of, split: str, dataset_split: str
) -> tuple[list[dict], int, list[str]]:
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
        rows.append(
            {
                "path": os.path.abspath(f),
                "rel_path": rel,
                "label": int(label),
                "class_name": CLASS_NAMES[int(label)],
                "split": split,
                "dataset_split": dataset_split,
            }
        )
    return rows, skipped, unlabelled


class _RootReport(TypedDict):
    """What ``_discover_root`` found besides the clip rows."""

    layout: str
    notes: list[str]
    skipped_non_video: int
    unlabelled: list[str]


def _discover_root(root: Path) -> tuple[list[dict], _RootReport]:
    """Rows and a report for one dataset root."""
    folder = root
    seen: set[str] = set()  # real paths of the folders walked, so each is walked once
    for _ in range(MAX_WRAPPER_DEPTH + 1):
        dirs, files = _entries(folder)
        split_dirs = [d for d in dirs if d.name.lower() in SPLIT_SYNONYMS]
        class_dirs = [d for d in dirs if class_label(d.name) is not None]
        flat_videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
        if split_dirs or class_dirs or flat_videos or len(dirs) != 1:
            break
        folder = dirs[0]  # a single wrapper folder, e.g. an unzipped archive's top folder
    report: _RootReport = {"layout": "", "notes": [], "skipped_non_video": 0, "unlabelled": []}
    rows: list[dict] = []
    root_real = os.path.realpath(root)

    def add(files, label_of, split="", dataset_split=""):
        new, skipped, unlabelled = _clip_rows(root, files, label_of, split, dataset_split)
        rows.extend(new)
        report["skipped_non_video"] += skipped
        report["unlabelled"].extend(unlabelled)
        return len(new)

    def add_class_folder(class_dir: Path, split="", dataset_split=""):
        label = class_label(class_dir.name)
        found = add(_walk_files(class_dir, seen, root_real, report["notes"]), lambda f: label, split, dataset_split)
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
            sub_classes = [d for d in sub_dirs if class_label(d.name) is not None]
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
            report["notes"].append(
                "dataset has train and val only: its val is used as the test split "
                "(the benchmark's reported split); validation is carved from train"
            )
    elif class_dirs:
        for class_dir in class_dirs:
            add_class_folder(class_dir)
        names = {d.name.lower() for d in class_dirs}
        report["layout"] = "real-life-violence-situations" if names == {"violence", "nonviolence"} else "class"
    elif flat_videos:
        add(files, lambda f: _flat_label(f.name))
        report["layout"] = "hockey/movies-flat"
        if not rows:
            raise _unknown_layout(
                root,
                folder,
                "a flat folder of videos, but no file name starts with fi/newfi (violent) or no/newno (non-violent)",
            )
    else:
        raise _unknown_layout(root, folder, "no split folders, class folders or video files found")
    if class_dirs or split_dirs:
        ignored = [d.name for d in dirs if d not in class_dirs and d not in split_dirs]
        if ignored:
            report["notes"].append(f"ignored top-level folders: {ignored}")
    if report["unlabelled"]:
        report["notes"].append(
            f"{len(report['unlabelled'])} video files have no class in their name and were "
            f"skipped, e.g. {report['unlabelled'][:3]}"
        )
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
    for (_, index), k in zip(strata, take, strict=True):
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
        raise ValueError(
            f"data_dirs lists the same folder twice: {[str(r) for r in roots]}; each clip would be counted twice"
        )
    frames, layouts, skipped = [], {}, {}
    notes: list[str] = []
    for root, source in zip(roots, _source_names(roots), strict=True):
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
    clips.attrs.update(
        {"layouts": layouts, "notes": notes, "skipped_non_video": skipped, "data_dirs": [str(r) for r in roots]}
    )
    return clips


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
