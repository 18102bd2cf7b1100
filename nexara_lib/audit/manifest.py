"""Stage 01, data audit, in one call: ``build_manifest`` (discover, probe, find duplicates, group,
split, summarise) and ``write_audit`` (manifest.csv, unusable.csv, audit.json).

The manifest this module writes is the single source of truth for later
stages: one row per usable clip with its label, split, source, group and probe
facts. Notebook 01 calls, in order::

    manifest, unusable, summary = build_manifest(data_dirs, groups_csv, ...)
    write_audit(manifest, unusable, summary, artifacts_dir)
    class_balance_figure(manifest); duration_figure(manifest); frame_grid_figure(manifest)

(the figures live in ``nexara_lib.audit.figures``).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd

from nexara_lib.audit.discover import SPLITS, discover_clips, make_clip_id
from nexara_lib.audit.duplicates import PHASH_MAX_DISTANCE, find_duplicates
from nexara_lib.audit.groups import attach_groups
from nexara_lib.audit.probe_pool import PROBE_COLUMNS, probe_clips
from nexara_lib.audit.splits import assign_splits, check_fractions
from nexara_lib.io import to_jsonable, write_atomic
from nexara_lib.labels import CLASS_NAMES

MANIFEST_COLUMNS = (
    "clip_id",
    "path",
    "rel_path",
    "source",
    "label",
    "class_name",
    "split",
    "dataset_split",
    "split_origin",
    "group",
    "sha1",
    "duplicate",
    "duplicate_kind",
    "duplicate_of",
    "dup_cluster",
    "leakage",
    *PROBE_COLUMNS,
)


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
    return {
        k: {"clip": k, "path": p, "split": s, "dataset_split": d, "label": int(lab), "kind": kind or None}
        for k, p, s, d, lab, kind in zip(
            keys,
            manifest["path"],
            manifest["split"],
            manifest["dataset_split"],
            manifest["label"],
            manifest["duplicate_kind"],
            strict=True,
        )
    }


def _duplicate_report(manifest: pd.DataFrame, clusters: list[dict], method: dict) -> dict:
    """Every duplicate cluster with its clips' splits and labels, and whether it stays in one split."""
    facts = _clip_facts(manifest)
    listed = []
    for cluster in clusters:
        clips = [facts[k] for k in cluster["clips"] if k in facts]
        splits = sorted({c["split"] for c in clips})
        listed.append(
            {
                "cluster": cluster["cluster"],
                "kind": cluster["kind"],
                "splits": splits,
                "same_split": len(splits) == 1,
                "labels_disagree": len({c["label"] for c in clips}) > 1,
                "clips": clips,
                "pairs": cluster["pairs"],
                "pairs_total": cluster["pairs_total"],
            }
        )
    kinds = Counter(c["kind"] for c in listed)
    return {
        "method": method,
        "clusters": len(listed),
        "sets": len(listed),
        "clips": int(manifest["duplicate"].sum()),
        "exact_clusters": kinds["exact"],
        "perceptual_clusters": kinds["perceptual"],
        "mixed_clusters": kinds["exact+perceptual"],
        "within_one_split": sum(c["same_split"] for c in listed),
        "across_splits": sum(not c["same_split"] for c in listed),
        "label_conflicts": [c["cluster"] for c in listed if c["labels_disagree"]],
        "list": listed[:MAX_LISTED],
    }


def _leakage_report(manifest: pd.DataFrame, duplicates: dict) -> dict:
    """What leaks between splits: duplicate clusters, then groups (source recordings) not explained by one."""
    facts = _clip_facts(manifest)
    items: list[dict] = []
    covered: set[str] = set()
    for cluster in duplicates["list"]:
        if not cluster["same_split"]:
            items.append(
                {
                    "kind": cluster["kind"],
                    "cluster": cluster["cluster"],
                    "splits": cluster["splits"],
                    "clips": [{k: c[k] for k in ("clip", "split", "dataset_split")} for c in cluster["clips"]],
                }
            )
            covered.update(c["clip"] for c in cluster["clips"])
    leaked = manifest[manifest["leakage"]]
    keys = leaked["source"].astype(str) + "/" + leaked["rel_path"].astype(str)
    for group, index in keys.groupby(leaked["group"]).groups.items():
        members = keys[index].tolist()
        splits = sorted({facts[k]["split"] for k in members})
        if len(splits) > 1 and not set(members) <= covered:
            items.append(
                {
                    "kind": "same group",
                    "group": str(group),
                    "splits": splits,
                    "clips": [{k: facts[m][k] for k in ("clip", "split", "dataset_split")} for m in members],
                }
            )
    return {
        "clips": int(len(leaked)),
        "groups": sorted(leaked["group"].astype(str).unique().tolist())[:50],
        "items_total": len(items),
        "items": items[:MAX_LISTED],
    }


def _warning_report(manifest: pd.DataFrame) -> dict:
    """Non-fatal probe findings: counted by kind (numbers removed) and listed per clip."""
    with_warnings = manifest[manifest["warnings"].astype(str) != ""]
    kinds = Counter(
        re.sub(r"\d+(\.\d+)?", "N", w.split(":")[0])
        for text in with_warnings["warnings"]
        for w in str(text).split("; ")
    )
    return {
        "clips": int(len(with_warnings)),
        "by_kind": dict(kinds.most_common()),
        "list": [
            {"clip": f"{s}/{r}", "warnings": w}
            for s, r, w in zip(
                with_warnings["source"], with_warnings["rel_path"], with_warnings["warnings"], strict=True
            )
        ][:MAX_LISTED],
    }


def _data_notes(manifest: pd.DataFrame, duplicates: dict) -> list[str]:
    """Findings about the usable data a reader must see, also raised as warnings."""
    notes = []
    missing = sorted({0, 1} - set(manifest["label"]))
    if missing:
        notes.append(f"only one class is usable: no {CLASS_NAMES[missing[0]]} clips; a classifier needs both")
    if duplicates["label_conflicts"]:
        notes.append(
            f"duplicate clusters whose clips have different labels (the same content labelled both "
            f"ways; fix the labels): {duplicates['label_conflicts'][:20]}"
        )
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return notes


def build_manifest(
    data_dirs,
    groups_csv=None,
    fractions=(0.70, 0.15, 0.15),
    seed: int = 0,
    workers: int = 2,
    max_clips: int = 0,
    progress: bool = True,
    *,
    probe_timeout_s: float | None = 30.0,
    probe_fn=None,
    max_phash_distance: float = PHASH_MAX_DISTANCE,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Discover, probe, find duplicates, group and split: the whole audit in one call.

    Args:
        data_dirs: dataset folder(s).
        groups_csv: optional CSV (clip, label, source_group) or a list of them (a CSV inside a data root
            describes that root's clips: ``attach_groups``); None groups duplicate clusters (identical bytes
            or look-alike frames).
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
    fractions = check_fractions(fractions)
    clips = discover_clips(data_dirs, max_clips=max_clips, seed=seed)
    found = dict(clips.attrs)
    # Probe before grouping: the probe pool hashes files in parallel, and the
    # hashes are what groups clips when there is no groups CSV.
    probed = probe_clips(clips, workers=workers, progress=progress, probe_timeout_s=probe_timeout_s, probe_fn=probe_fn)
    deduped = find_duplicates(probed, max_distance=max_phash_distance)
    grouped = attach_groups(deduped, groups_csv)
    usable = grouped["status"] == "ok"
    unusable = grouped.loc[~usable, ["path", "rel_path", "source", "label", "reason"]].reset_index(drop=True)
    if not usable.any():
        reasons = Counter(unusable["reason"]).most_common(5)
        raise ValueError(
            f"none of the {len(grouped)} clips found under {found['data_dirs']} is usable; "
            f"most common reasons: {reasons}. See the files with probe_video(path)"
        )
    manifest = assign_splits(grouped[usable], fractions=fractions, seed=seed)
    manifest["clip_id"] = [make_clip_id(s, r) for s, r in zip(manifest["source"], manifest["rel_path"], strict=True)]
    split_notes = manifest.attrs.get("split_notes", [])
    manifest = manifest[list(MANIFEST_COLUMNS)].reset_index(drop=True)
    duplicates = _duplicate_report(manifest, deduped.attrs["duplicate_clusters"], deduped.attrs["duplicate_method"])
    seconds = probed.attrs.get("probe_seconds", 0.0)
    summary = {
        "data_dirs": found["data_dirs"],
        "groups_csv": grouped.attrs.get("groups_report", {}).get("groups_csv"),
        "layouts": found["layouts"],
        "seed": seed,
        "fractions": dict(zip(SPLITS, fractions, strict=True)),
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
        "duration_s": {
            "total": float(manifest["duration_s"].sum(skipna=True)),
            "median": float(manifest["duration_s"].median(skipna=True)),
        },
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


def write_audit(
    manifest: pd.DataFrame, unusable: pd.DataFrame, summary: dict, artifacts_dir: str | os.PathLike
) -> dict[str, str]:
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
