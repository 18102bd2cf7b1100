"""Grouped, stratified train/val/test splits (``assign_splits``) and the leakage flags.

Splits are always grouped: clips that share a group (a source recording from a
groups CSV) or a duplicate cluster (identical bytes, or look-alike frames such
as a re-encoded copy) never land in two splits, because a model that saw a
near-copy of a test clip in training reports inflated accuracy.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict

import numpy as np
import pandas as pd

from nexara_lib.audit.discover import SPLIT_SYNONYMS, SPLITS
from nexara_lib.audit.links import linked_units


def check_fractions(fractions) -> tuple[float, float, float]:
    """The train, val, test shares as floats; ValueError unless three positive numbers summing to 1."""
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or any(not f > 0 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(
            f"split fractions must be three positive numbers (train, val, test) summing to 1, "
            f"got {fractions!r}; e.g. (0.7, 0.15, 0.15)"
        )
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
        "carved" = moved out of the dataset's train split, "pinned" = by a groups CSV's split column
        (``pinned_split``; the rest of a pinned clip's group follows it), or "generated") and leakage (the row's group,
        SHA-1 or duplicate cluster is in two splits; only possible when the dataset's own splits leak).
    Raises:
        ValueError: missing columns, bad fractions, a source with splits but no
            train, or too few groups to fill train, val and test.
    """
    fractions = dict(zip(SPLITS, check_fractions(fractions), strict=True))
    for column in ("label", "group"):
        if column not in clips:
            raise ValueError(
                f"assign_splits: clips has no {column!r} column; run discover_clips and attach_groups first"
            )
    df = clips.copy().reset_index(drop=True)
    split = _dataset_splits(df)
    if "dataset_split" not in df:
        df["dataset_split"] = split
    source = df["source"].astype(str) if "source" in df else pd.Series("", index=df.index)
    allowed, origin, notes = _split_choices(split, source, fractions)
    if "pinned_split" in df:  # a groups CSV pins these clips (e.g. reviewed field clips: train): never moved
        pins = df["pinned_split"].fillna("").astype(str)
        for row in np.flatnonzero(pins.to_numpy() != "").tolist():
            split[row], allowed[row], origin[row] = pins[row], None, "pinned"
        if (pins != "").any():
            notes.append(f"{int((pins != '').sum())} clips pinned to their split by a groups CSV")
    units = linked_units([df[c].fillna("").astype(str).tolist() for c in LINK_COLUMNS if c in df])
    strata = list(zip(source, df["label"].astype(int), strict=True))
    final = split.copy()
    target, stratum_total = _split_targets(allowed, strata, fractions)
    pinned, pool_units = _units_to_place(df, units, allowed, split)
    assigned: Counter = Counter()
    for i, s in pinned.items():
        final[i] = s
        assigned[(s, strata[i])] += 1
    unit_split = _place_units(pool_units, strata, target, stratum_total, assigned, seed)
    for k, s in _fill_empty_splits(final, unit_split, pool_units).items():
        for i in pool_units[k][2]:
            final[i] = s
    df["split"] = final
    # "carved": a dataset train clip moved to a split the dataset lacked.
    origin[(split != "") & (final != split)] = "carved"
    df["split_origin"] = origin
    empty = [s for s in SPLITS if not (df["split"] == s).any()]
    if empty:
        raise ValueError(
            f"assign_splits: split(s) {empty} are empty: only {len(set(units))} groups of clips "
            f"({len(df)} clips) and a group cannot be divided; add clips or groups, or check that "
            "the groups CSV does not put everything in one group"
        )
    for src in sorted(set(source)):
        in_source = df[source == src]
        if (in_source["split_origin"] == "pinned").all():
            continue  # pinned on purpose (a field folder: train only)
        lacking = [s for s in SPLITS if not (in_source["split"] == s).any()]
        if lacking:
            warnings.warn(f"source {src!r} has no clips in split(s) {lacking} (too few groups)", stacklevel=2)
    df["leakage"] = _leakage_flags(df)
    if df["leakage"].any():
        leaked = sorted(df.loc[df["leakage"], "group"].unique())
        warnings.warn(
            f"leakage: {int(df['leakage'].sum())} clips in {len(leaked)} groups (or duplicate clusters) "
            f"appear in more than one of the dataset's own splits, e.g. {leaked[:5]}; results on "
            "these splits are optimistic",
            stacklevel=2,
        )
        notes.append(f"leakage in the dataset's own splits: {int(df['leakage'].sum())} clips, groups {leaked[:20]}")
    df.attrs.update(clips.attrs)
    df.attrs["split_notes"] = notes
    return df


def _dataset_splits(df: pd.DataFrame) -> pd.Series:
    """Each row's own split under our name (train/val/test; "" for none), from its split column."""
    raw = df["split"].fillna("").astype(str).str.strip().str.lower() if "split" in df else pd.Series("", index=df.index)
    bad = sorted(set(raw) - set(SPLIT_SYNONYMS) - {""})
    if bad:
        raise ValueError(f"assign_splits: unknown split names {bad}; use train/val/test (or leave empty)")
    return raw.map(lambda s: SPLIT_SYNONYMS.get(s, ""))


def _split_choices(
    split: pd.Series, source: pd.Series, fractions: dict[str, float]
) -> tuple[list[tuple[str, ...] | None], pd.Series, list[str]]:
    """Per row, the splits it may take (None: it keeps its dataset split) and its split origin; notes per source.

    A row without a split may take any; a dataset train row may also take the
    splits its source lacks (they are carved from train).
    """
    allowed: list[tuple[str, ...] | None] = [None] * len(split)  # None: the row's split is fixed
    origin = pd.Series("dataset", index=split.index)
    notes = []
    for src, index in source.groupby(source, sort=True).groups.items():
        present = set(split[index]) - {""}
        if present and "train" not in present:
            raise ValueError(
                f"assign_splits: source {src!r} has splits {sorted(present)} but no train split; "
                "add its train clips, or clear its split column to make new splits"
            )
        missing = tuple(s for s in SPLITS if s not in present)
        for i in index:
            if split[i] == "":
                allowed[i], origin[i] = SPLITS, "generated"
            elif split[i] == "train" and missing:
                allowed[i] = ("train", *missing)
        if not present:
            notes.append(
                f"{src}: no splits of its own; made grouped, stratified "
                f"{'/'.join(f'{fractions[s]:.0%}' for s in SPLITS)} splits"
            )
        elif missing:
            notes.append(f"{src}: {'/'.join(missing)} carved from its train clips (grouped, stratified)")
    return allowed, origin, notes


def _split_targets(
    allowed: list, strata: list[tuple], fractions: dict[str, float]
) -> tuple[defaultdict[tuple, float], Counter]:
    """Target clips per (split, stratum), each free row spreading its weight over the splits it may take;
    and free rows per stratum."""
    target: defaultdict[tuple, float] = defaultdict(float)  # fractional clips: a row spreads over its splits
    stratum_total: Counter = Counter()
    for i, choices in enumerate(allowed):
        if choices is None:
            continue
        share = sum(fractions[s] for s in choices)
        for s in choices:
            target[(s, strata[i])] += fractions[s] / share
        stratum_total[strata[i]] += 1
    return target, stratum_total


def _units_to_place(
    df: pd.DataFrame, units: np.ndarray, allowed: list, split: pd.Series
) -> tuple[dict[int, str], list[tuple]]:
    """The free rows of each unit: pinned, or in a unit still to place.

    Returns:
        (pinned, pool_units): pinned maps a free row of a unit that partly sits
        in a dataset split to the split it follows; pool_units lists every other
        unit with free rows as (its first clip by ``_clip_keys``, unit id, free rows,
        the splits all of them may take), sorted.
    """
    keys = _clip_keys(df)
    unit_rows: dict[int, list[int]] = {}
    for i, u in enumerate(units):
        unit_rows.setdefault(int(u), []).append(i)
    pinned: dict[int, str] = {}
    pool_units = []
    for u, rows in unit_rows.items():
        pool = [i for i in rows if allowed[i] is not None]
        if not pool:
            continue
        fixed = Counter(split[i] for i in rows if allowed[i] is None)
        if fixed:
            # Part of the unit sits in a dataset split: follow it where a row may.
            followed = fixed.most_common(1)[0][0]
            for i in pool:
                pinned[i] = followed if followed in allowed[i] else split[i] or followed
            continue
        choices = tuple(s for s in SPLITS if all(s in allowed[i] for i in pool)) or ("train",)
        pool_units.append((min(keys[i] for i in pool), u, pool, choices))
    pool_units.sort()
    return pinned, pool_units


def _clip_keys(df: pd.DataFrame) -> list[str]:
    """What orders the units before the seeded shuffle: each clip's place inside its dataset ("source/rel_path"),
    never its absolute path, so the same dataset moved or mounted elsewhere gets the same splits. Without
    rel_path, the path as given; without either, the row number."""
    if "rel_path" in df:
        source = df["source"].astype(str) if "source" in df else pd.Series("", index=df.index)
        return (source + "/" + df["rel_path"].astype(str)).tolist()
    if "path" in df:
        return df["path"].astype(str).tolist()
    return [str(i) for i in range(len(df))]


def _place_units(
    pool_units: list[tuple],
    strata: list[tuple],
    target: defaultdict[tuple, float],
    stratum_total: Counter,
    assigned: Counter,
    seed: int,
) -> dict:
    """Split per unit (by its index in ``pool_units``), greedily: each unit goes where its strata stay
    closest to their targets, given the clips ``assigned`` so far."""
    assigned = Counter(assigned)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(pool_units)).tolist()
    # Largest units first (they are the hardest to place); the shuffle breaks ties by seed.
    order = sorted(shuffled, key=lambda k: -len(pool_units[k][2]))
    unit_split: dict = {}
    for k in order:
        _, _, pool, choices = pool_units[k]
        counts = Counter(strata[i] for i in pool)

        def cost(s: str, counts: Counter = counts) -> tuple[float, float, int]:
            delta = sum(
                ((assigned[(s, st)] + c - target[(s, st)]) ** 2 - (assigned[(s, st)] - target[(s, st)]) ** 2)
                / max(stratum_total[st], 1)
                for st, c in counts.items()
            )
            deficit = sum(target[(s, st)] - assigned[(s, st)] for st in counts)
            return delta, -deficit, SPLITS.index(s)

        best = min(choices, key=cost)
        unit_split[k] = best
        for st, c in counts.items():
            assigned[(best, st)] += c
    return unit_split


def _fill_empty_splits(final: pd.Series, unit_split: dict, pool_units: list[tuple]) -> dict:
    """``unit_split`` repaired: a split the pools should produce but that stayed empty takes the
    smallest movable unit from the split holding the most units."""
    unit_split = dict(unit_split)
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
    return unit_split
