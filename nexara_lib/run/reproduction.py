"""What another machine needs to reproduce a run's numbers, as ``run.json``'s ``reproduction`` section.

A run's results depend on its parameters, the data's content, the library's code and the package versions, never
on where the data or the outputs lie: clip ids, cache names, augmentation draws, splits and every training seed
come from the dataset folder's name, each clip's path inside it and its content (README, "Reproducibility").
So the section splits the parameters in two: ``params`` (what the results depend on) and ``location`` (where
things lay on this machine; another output root, dataset or weights location gives the same results). ``data``
identifies the clips the audit used and how it split them (``data_digest``), so a reproduction can check it
audited the same data before comparing numbers; ``code`` is a hash of the library's sources (also for a tree with
uncommitted changes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nexara_lib.layout import RunLayout
from nexara_lib.run.fingerprint import code_digest

# Parameters that say where inputs and outputs lie: none of them feeds a result (their files' contents do).
LOCATION_KEYS = ("output_root", "run_name", "data_dir", "groups_csv", "pretrained_dir")
# What identifies a clip and what the audit decided for it: the columns of the data digest.
DATA_COLUMNS = ("clip_id", "sha1", "bytes", "frames", "label", "split", "group")


def data_digest(manifest: pd.DataFrame) -> str:
    """sha256 of every clip's id, content facts, label, split and group, in clip id order (no path)."""
    rows = manifest[[c for c in DATA_COLUMNS if c in manifest]].astype(str).sort_values("clip_id", kind="stable")
    digest = hashlib.sha256(",".join(rows.columns).encode())
    for row in rows.itertuples(index=False):
        digest.update(("|".join(row) + "\n").encode())
    return digest.hexdigest()


def reproduction_record(params: Mapping[str, Any], run_dir: str | Path) -> dict:
    """``run.json``'s ``reproduction`` section (``data`` is None before the audit wrote the manifest)."""
    manifest_path = RunLayout(Path(run_dir)).manifest
    data = None
    try:
        manifest = pd.read_csv(manifest_path, keep_default_na=False) if manifest_path.is_file() else None
    except (OSError, ValueError):  # unreadable or cut short: the audit's own notebook says so; no digest here
        manifest = None
    if manifest is not None:
        if "status" in manifest:
            manifest = manifest[manifest["status"] == "ok"]
        data = {
            "clips": int(len(manifest)),
            "clips_per_source": {str(k): int(v) for k, v in manifest["source"].value_counts().sort_index().items()}
            if "source" in manifest
            else {},
            "digest": data_digest(manifest),
        }
    return {
        "params": {k: v for k, v in params.items() if k not in LOCATION_KEYS},
        "location": {k: params.get(k) for k in LOCATION_KEYS},
        "data": data,
        "code": code_digest(),
    }
