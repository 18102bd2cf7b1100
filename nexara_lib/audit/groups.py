"""The ``group`` of every clip (``attach_groups``): its source recording from a groups CSV, or its
duplicate cluster when there is no CSV. Clips of one group never span two splits.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.audit.discover import SPLITS as PINNABLE_SPLITS
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
    """The groups CSV (columns clip, source_group, optional label and split), checked: it exists, has the columns
    and lists each clip once; a split, when given, is train, val or test (it pins the clip there). Clip paths
    are normalised (forward slashes, no leading ``./``).

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
    if "split" in table.columns:  # optional: pins clips to a split (nexara feedback's field clips: train)
        table["split"] = table["split"].str.strip().str.lower()
        bad = sorted(set(table["split"]) - {"", *PINNABLE_SPLITS})
        if bad:
            raise ValueError(
                f"groups CSV {str(groups_csv)!r}: column split holds {bad}; use train, val, test or leave it empty"
            )
    if table["clip"].duplicated().any():
        dup = table.loc[table["clip"].duplicated(), "clip"].tolist()[:5]
        raise ValueError(f"groups CSV {str(groups_csv)!r} lists a clip more than once, e.g. {dup}; keep one row each")
    return table


def _as_list(groups_csv) -> list[Path]:
    if groups_csv is None:
        return []
    items = [groups_csv] if isinstance(groups_csv, (str, os.PathLike)) else list(groups_csv)
    return [Path(p) for p in items]


def _source_roots(clips: pd.DataFrame) -> dict[str, Path]:
    """Each source's root folder (a clip's path less its path relative to the root)."""
    roots = {}
    for source, path, rel in zip(clips["source"], clips["path"], clips["rel_path"], strict=True):
        if source not in roots:
            parts = Path(rel).parts
            roots[source] = Path(os.path.abspath(path)).parents[len(parts) - 1]
    return roots


def _scope(csv: Path, roots: dict[str, Path]) -> str | None:
    """The source whose root holds ``csv`` (it describes that root's clips only), or None (any source's)."""
    folder = Path(os.path.abspath(csv)).parent
    inside = [s for s, root in roots.items() if folder == root or root in folder.parents]
    return max(inside, key=lambda s: len(roots[s].parts)) if inside else None


def _duplicate_groups(out: pd.DataFrame) -> list[str]:
    # An unreadable file hashes to "": give it its own group, not a shared one.
    return [
        "dup:" + c if c else "sha1:" + h if h else f"clip:{s}/{r}"
        for c, h, s, r in zip(out["dup_cluster"], out["sha1"], out["source"], out["rel_path"], strict=True)
    ]


def attach_groups(clips: pd.DataFrame, groups_csv=None) -> pd.DataFrame:
    """Add a ``group`` column: clips of one group must never span two splits.

    Args:
        clips: from ``discover_clips`` or ``probe_clips`` (needs path, rel_path,
            source, label).
        groups_csv: a CSV, or a list of CSVs, with columns clip, label and source_group. A CSV that lies in
            a data root (as the ``groups.csv`` of ``nexara feedback``'s field folder does) describes that
            root's clips, by their path relative to the root; a CSV elsewhere describes every root's clips,
            by path relative to their root or ``<source>/<path>``. Clips of a root that no CSV describes,
            and every clip when there is no CSV, are grouped by duplicate cluster (``find_duplicates``:
            identical bytes, or look-alike frames when the clips were probed), so copies share a group.
    Returns:
        A copy with ``group`` (and ``sha1``/duplicate columns when they had to be
        computed; ``pinned_split`` when a CSV's ``split`` column pins clips to a split). Clips a CSV should
        describe but misses get a group of their own, with a warning; ``attrs["groups_report"]`` counts
        matches and label disagreements.
    Raises:
        ValueError: a CSV that is missing or malformed, or two CSVs that both list a clip.
    """
    out = clips.copy()
    csvs = _as_list(groups_csv)
    if not csvs:
        if "dup_cluster" not in out:
            out = find_duplicates(out)
        out["group"] = _duplicate_groups(out)
        out.attrs["groups_report"] = {
            "groups_csv": None,
            "method": "duplicate clusters (identical bytes or look-alike frames); other clips alone",
        }
        return out
    roots = _source_roots(out)
    rows: dict[str, tuple[Path, pd.Series]] = {}  # key -> (csv, row)
    covered: set[str | None] = set()  # sources a CSV describes (None: every source)
    tables = {}
    for csv in csvs:
        table = read_groups_csv(csv)
        tables[csv] = table
        scope = _scope(csv, roots)
        covered.add(scope)
        for _, row in table.iterrows():
            key = f"{scope}/{row['clip']}" if scope is not None else row["clip"]
            if key in rows and rows[key][0] != csv:
                raise ValueError(
                    f"groups CSVs {str(rows[key][0])!r} and {str(csv)!r} both list clip {row['clip']!r}; "
                    "list each clip in one CSV"
                )
            rows[key] = (csv, row)
    groups, labels_off, unmatched, used, pins = [], [], [], set(), []
    fallback: list[str] = []
    if None not in covered and set(out["source"]) - covered:  # some roots have no CSV: group them by duplicates
        if "dup_cluster" not in out:
            out = find_duplicates(out)
        fallback = _duplicate_groups(out)
    for i, (source, rel, label) in enumerate(zip(out["source"], out["rel_path"], out["label"], strict=True)):
        key = next((k for k in (f"{source}/{rel}", rel) if k in rows), None)
        if key is not None:
            used.add(key)
            csv, row = rows[key]
            groups.append("csv:" + str(row["source_group"]))
            pins.append(str(row.get("split", "") or ""))
            if "label" in row.index and _parse_label(row["label"]) not in (None, int(label)):
                labels_off.append(f"{source}/{rel} (csv says {row['label']!r})")
        elif source in covered or None in covered:
            pins.append("")
            groups.append(f"clip:{source}/{rel}")
            unmatched.append(f"{source}/{rel}")
        else:  # no CSV describes this root: its duplicate clusters group it
            pins.append("")
            groups.append(fallback[i])
    out["group"] = groups
    if any(pins):
        out["pinned_split"] = pins  # assign_splits keeps these clips (and their group) in that split
    names = ", ".join(repr(str(c)) for c in csvs)
    if unmatched:
        warnings.warn(
            f"{len(unmatched)} of {len(out)} clips are not in groups CSV {names} and each "
            f"get a group of their own (they may leak if they share a recording with another clip): "
            f"{unmatched[:5]}{' ...' if len(unmatched) > 5 else ''}",
            stacklevel=2,
        )
    unused = [k for k in rows if k not in used]
    if unused:
        total = sum(len(t) for t in tables.values())
        warnings.warn(
            f"{len(unused)} of {total} rows of groups CSV {names} name clips that were not "
            f"found in the data folders (a typo, another layout, or a clip left out): "
            f"{unused[:5]}{' ...' if len(unused) > 5 else ''}",
            stacklevel=2,
        )
    if labels_off:
        warnings.warn(
            f"{len(labels_off)} clips have a different label in groups CSV {names} than "
            f"their folder says (the folder label is kept): {labels_off[:5]}",
            stacklevel=2,
        )
    out.attrs["groups_report"] = {
        "groups_csv": str(csvs[0]) if len(csvs) == 1 else [str(c) for c in csvs],
        "method": "source_group from CSV"
        + ("; roots without a CSV by duplicate cluster" if None not in covered else ""),
        "matched": sum(g.startswith("csv:") for g in groups),
        "not_in_csv": unmatched,
        "csv_rows": int(sum(len(t) for t in tables.values())),
        "csv_rows_not_found": unused,
        "label_disagreements": labels_off,
    }
    return out
