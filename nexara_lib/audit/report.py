"""Tables of notebook 01 built from ``audit.json``: what a reader must see about their data."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd


def audit_overview(summary: Mapping) -> pd.Series:
    """One column of headline facts: counts, imbalance, duplicates, leakage, probe speed and failures."""
    dup, leak = summary["duplicates"], summary["leakage"]
    return pd.Series(
        {
            "data folders": ", ".join(summary["data_dirs"]),
            "layouts": ", ".join(f"{k}: {v}" for k, v in summary["layouts"].items())
            if isinstance(summary["layouts"], dict)
            else str(summary["layouts"]),
            "clips found": summary["clips_found"],
            "usable": summary["clips_usable"],
            "unusable": summary["clips_unusable"],
            "non-video files skipped": _total(summary["non_video_files_skipped"]),
            "imbalance ratio (majority / minority)": summary["imbalance_ratio"],
            "groups (source recordings or duplicate clusters)": summary["groups"],
            "duplicate clusters (exact / perceptual / both)": (
                f"{dup['exact_clusters']} / {dup['perceptual_clusters']} / {dup['mixed_clusters']}"
            ),
            "duplicate clusters spanning two splits": dup["across_splits"],
            "clips leaking between splits": leak["clips"],
            "clips with probe warnings": summary["probe_warnings"]["clips"],
            "probe throughput (clips/s)": summary["probe_clips_per_s"],
            "probe timeouts / crashes": f"{summary['probe_timeouts']} / {summary['probe_crashes']}",
        },
        name="audit",
    )


def _total(value) -> int:
    return int(sum(value.values())) if isinstance(value, Mapping) else int(value)


def duplicates_table(summary: Mapping) -> pd.DataFrame:
    """One row per clip of every duplicate cluster: which copies, of which kind, in which split."""
    rows = [
        {
            "cluster": c["cluster"],
            "kind": c["kind"],
            "clip": clip["clip"],
            "split": clip["split"],
            "label": clip["label"],
            "cluster spans splits": not c["same_split"],
        }
        for c in summary["duplicates"]["list"]
        for clip in c["clips"]
    ]
    return pd.DataFrame(rows, columns=["cluster", "kind", "clip", "split", "label", "cluster spans splits"])


def leakage_table(summary: Mapping) -> pd.DataFrame:
    """One row per clip found in two splits of the dataset's own splits (same bytes, same content or same group)."""
    rows = [
        {
            "kind": item["kind"],
            "cluster or group": item.get("cluster", item.get("group")),
            "clip": clip["clip"],
            "split": clip["split"],
            "dataset split": clip["dataset_split"],
        }
        for item in summary["leakage"]["items"]
        for clip in item["clips"]
    ]
    return pd.DataFrame(rows, columns=["kind", "cluster or group", "clip", "split", "dataset split"])


def warnings_table(summary: Mapping) -> pd.DataFrame:
    """Usable clips with non-fatal probe findings (header frame count wrong, variable frame rate, ...)."""
    return pd.DataFrame(summary["probe_warnings"]["list"], columns=["clip", "warnings"])


def notes_list(summary: Mapping) -> pd.Series:
    """The audit's notes on the data (layouts, skipped folders, single-class warnings), one per row."""
    return pd.Series(summary["notes"], name="notes", dtype=object)
