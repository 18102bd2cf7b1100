"""The ``group`` of every clip (``attach_groups``): its source recording from a groups CSV, or its
duplicate cluster when there is no CSV. Clips of one group never span two splits.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.audit.discover import class_label
from nexara_lib.audit.duplicates import find_duplicates


def _parse_label(value) -> int | None:
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return int(value)
    text = str(value).strip()
    if text in ("0", "1"):
        return int(text)
    if text.lower() in ("violent", "non-violent"):
        return int(text.lower() == "violent")
    return class_label(text)


def read_groups_csv(groups_csv: str | os.PathLike) -> pd.DataFrame:
    """The groups CSV (columns clip, source_group, optional label), checked: it exists, has the columns and lists
    each clip once. Clip paths are normalised (forward slashes, no leading ``./``).

    Raises:
        ValueError: naming the file and what to fix (the run's parameter check turns it into exit code 2,
            before any clip is probed).
    """
    groups_csv = Path(groups_csv)
    if not groups_csv.is_file():
        raise ValueError(f"groups CSV {str(groups_csv)!r} does not exist; fix groups_csv or set it to null")
    try:
        table = pd.read_csv(groups_csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(
            f"groups CSV {str(groups_csv)!r} is not a readable CSV ({err}); expected columns clip, label, source_group"
        ) from None
    missing_cols = {"clip", "source_group"} - set(table.columns)
    if missing_cols:
        raise ValueError(
            f"groups CSV {str(groups_csv)!r} lacks columns {sorted(missing_cols)}; it has "
            f"{list(table.columns)}; expected clip, label, source_group"
        )
    table["clip"] = table["clip"].str.strip().str.replace("\\", "/", regex=False).str.lstrip("./")
    if table["clip"].duplicated().any():
        dup = table.loc[table["clip"].duplicated(), "clip"].tolist()[:5]
        raise ValueError(f"groups CSV {str(groups_csv)!r} lists a clip more than once, e.g. {dup}; keep one row each")
    return table


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
        out["group"] = [
            "dup:" + c if c else "sha1:" + h if h else f"clip:{s}/{r}"
            for c, h, s, r in zip(out["dup_cluster"], out["sha1"], out["source"], out["rel_path"])
        ]
        out.attrs["groups_report"] = {
            "groups_csv": None,
            "method": "duplicate clusters (identical bytes or look-alike frames); other clips alone",
        }
        return out
    groups_csv = Path(groups_csv)
    table = read_groups_csv(groups_csv)
    by_clip = table.set_index("clip")
    groups, labels_off, unmatched, used = [], [], [], set()
    for source, rel, label in zip(out["source"], out["rel_path"], out["label"]):
        key = f"{source}/{rel}" if f"{source}/{rel}" in by_clip.index else rel
        if key in by_clip.index:
            used.add(key)
            row = by_clip.loc[key]
            groups.append("csv:" + str(row["source_group"]))
            if "label" in by_clip.columns and _parse_label(row["label"]) not in (None, int(label)):
                labels_off.append(f"{source}/{rel} (csv says {row['label']!r})")
        else:
            groups.append(f"clip:{source}/{rel}")
            unmatched.append(f"{source}/{rel}")
    out["group"] = groups
    if unmatched:
        warnings.warn(
            f"{len(unmatched)} of {len(out)} clips are not in groups CSV {str(groups_csv)!r} and each "
            f"get a group of their own (they may leak if they share a recording with another clip): "
            f"{unmatched[:5]}{' ...' if len(unmatched) > 5 else ''}",
            stacklevel=2,
        )
    unused = [clip for clip in table["clip"] if clip not in used]
    if unused:
        warnings.warn(
            f"{len(unused)} of {len(table)} rows of groups CSV {str(groups_csv)!r} name clips that were not "
            f"found in the data folders (a typo, another layout, or a clip left out): "
            f"{unused[:5]}{' ...' if len(unused) > 5 else ''}",
            stacklevel=2,
        )
    if labels_off:
        warnings.warn(
            f"{len(labels_off)} clips have a different label in groups CSV {str(groups_csv)!r} than "
            f"their folder says (the folder label is kept): {labels_off[:5]}",
            stacklevel=2,
        )
    out.attrs["groups_report"] = {
        "groups_csv": str(groups_csv),
        "method": "source_group from CSV",
        "matched": len(out) - len(unmatched),
        "not_in_csv": unmatched,
        "csv_rows": len(table),
        "csv_rows_not_found": unused,
        "label_disagreements": labels_off,
    }
    return out
