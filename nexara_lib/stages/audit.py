"""Notebook 01 glue: audit the run's data, write the manifest, and what the notebook shows of it."""

from __future__ import annotations

import dataclasses

import pandas as pd

from nexara_lib.audit.figures import class_balance_figure, duration_figure, frame_grid_figure
from nexara_lib.audit.manifest import build_manifest, write_audit
from nexara_lib.audit.report import audit_overview, duplicates_table, leakage_table, notes_list, warnings_table
from nexara_lib.layout import RunLayout, save_figure
from nexara_lib.stages.data import prepare_data_dirs, run_groups_csv
from nexara_lib.stages.headline import record_headline, record_summary


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """What the audit found: usable clips (the manifest), unusable files with the reason, the summary."""

    manifest: pd.DataFrame
    unusable: pd.DataFrame
    summary: dict


def run_audit(params, layout: RunLayout) -> AuditResult:
    """Discover and probe the run's clips (generating the synthetic set first if asked: grouped by its
    cameras), make the grouped splits and write ``manifest.csv``, ``unusable.csv`` and ``audit.json``."""
    data_dirs = prepare_data_dirs(params)
    manifest, unusable, summary = build_manifest(
        data_dirs,
        groups_csv=run_groups_csv(params, data_dirs),
        fractions=tuple(params.split_fractions),
        seed=params.seed,
        workers=params.probe_workers,
        max_clips=params.max_clips,
        probe_timeout_s=params.probe_timeout_s,
    )
    write_audit(manifest, unusable, summary, layout.artifacts)
    print(f"{len(manifest)} usable clips, {len(unusable)} unusable")
    return AuditResult(manifest, unusable, summary)


def overview_tables(audit: AuditResult) -> tuple:
    """Clips per split and class, the audit's headline facts, and its notes on the data."""
    per_split = audit.manifest.groupby(["split", "class_name"]).size().unstack(fill_value=0)
    return per_split, audit_overview(audit.summary), notes_list(audit.summary)


def duplicate_and_leakage_tables(audit: AuditResult) -> tuple:
    return duplicates_table(audit.summary), leakage_table(audit.summary)


def probe_warnings_table(audit: AuditResult) -> pd.DataFrame:
    return warnings_table(audit.summary)


def data_figures(audit: AuditResult, layout: RunLayout) -> tuple:
    """Class balance and clip durations, saved under ``artifacts/figures``."""
    balance, durations = class_balance_figure(audit.manifest), duration_figure(audit.manifest)
    save_figure(balance, layout, "class_balance")
    save_figure(durations, layout, "durations")
    return balance, durations


def frame_grid(audit: AuditResult, params, layout: RunLayout):
    """A few frames of a few clips per class, saved under ``artifacts/figures``."""
    grid = frame_grid_figure(audit.manifest, per_class=4, frames=4, seed=params.seed)
    save_figure(grid, layout, "frame_grid")
    return grid


def publish_headline(audit: AuditResult, layout: RunLayout):
    """Headline figures and the summary in plain words (clips per split, unusable files, leakage)."""
    summary = audit.summary
    record_summary(layout.run_dir, "01_data_audit", *describe_audit(audit))
    return record_headline(
        layout.run_dir,
        "01_data_audit",
        {
            "usable clips": len(audit.manifest),
            "unusable files": len(audit.unusable),
            "imbalance ratio (larger class / smaller)": {"value": summary["imbalance_ratio"], "format": "number"},
            "groups of duplicate clips": summary["duplicates"]["clusters"],
            "clips the dataset's own splits put on both sides": summary["leakage"]["clips"],
        },
    )


def describe_audit(audit: AuditResult) -> tuple[str, str]:
    """(result, verdict) of the audit in plain words."""
    manifest, unusable = audit.manifest, audit.unusable
    classes = manifest["class_name"].value_counts()
    result = (
        f"{len(manifest):,} clips can be used ({int(classes.get('violent', 0)):,} violent, "
        f"{int(classes.get('non-violent', 0)):,} non-violent); "
        + (f"{len(unusable):,} file(s) could not be used." if len(unusable) else "every file found could be used.")
    )
    leaks = audit.summary["leakage"]["clips"]
    problems = []
    if len(unusable):
        problems.append(f"{len(unusable):,} unusable file(s) are listed below with the reason and left out")
    if leaks:
        problems.append(
            f"{leaks:,} clip(s) that the dataset's own splits put on both sides are kept within one "
            "split here, so they cannot inflate the test result"
        )
    if not problems:
        return result, (
            "The data is clean: every file could be read, and no clip or source recording appears in two splits."
        )
    return result, "Usable, with care: " + "; ".join(problems) + ". No source recording appears in two splits."
