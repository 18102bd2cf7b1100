"""Alerts measured against ground truth: violent segments detected or missed, time from a fight's onset to
its alarm, false alarms (per hour), and the same windows replayed through several policies
(``compare_policies``: k-of-n confirmation against alarming on every window)."""

from __future__ import annotations

import collections
import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from nexara_lib.deploy.alerts import TIME_EPS, AlarmPolicy, Episode, WindowScore, replay
from nexara_lib.labels import CLASS_KEYS, CLASS_NAMES


def _label(value) -> int:
    if isinstance(value, str):
        text = value.strip().lower()
        for names in (CLASS_NAMES, CLASS_KEYS):
            if text in names:
                return names.index(text)
    elif isinstance(value, numbers.Real) and value in (0, 1):
        return int(float(value))
    raise ValueError(f"truth label {value!r} is not 0/1 or one of {CLASS_NAMES}")


def violent_segments(truth: Sequence[Mapping]) -> list[tuple[float, float]]:
    """Violent (start_t, end_t) intervals of [{"start_t", "end_t", "label": 1/0 or "violent"/"non-violent"}],
    sorted, touching ones merged."""
    spans = []
    for i, seg in enumerate(truth):
        missing = {"start_t", "end_t", "label"} - set(seg)
        if missing:
            raise ValueError(f"truth segment {i} lacks {sorted(missing)} (has {sorted(seg)})")
        start, end = float(seg["start_t"]), float(seg["end_t"])
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"truth segment {i} needs finite start_t <= end_t, got {start}..{end}")
        if _label(seg["label"]) == 1:
            spans.append((start, end))
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        touching = merged and start <= merged[-1][1] + TIME_EPS
        merged[-1:] = [(merged[-1][0], max(merged[-1][1], end))] if touching else merged[-1:] + [(start, end)]
    return merged


def score_alerts(
    episodes: Sequence[Episode], truth: Sequence[Mapping], duration_s: float, tolerance_s: float = 0.0
) -> dict:
    """Alerts of one source/cell against its labelled violent segments.

    Give the alarm periods (``Confirmation.periods``) to count every false alarm, also one that a fight
    followed within the cooldown (its episode was continued); give the episodes to score pages. An episode spans
    [start_t, end_t] (an open one runs to ``duration_s``). A violent segment is
    detected when an episode overlaps it (each side widened by ``tolerance_s``); its onset-to-alarm
    is the first such episode's alarm_t minus the segment start (0 when an alarm was already on).
    Touching violent segments (consecutive violent clips) count as one.

    Args:
        episodes: episodes of one (source, cell); truth: its [{"start_t", "end_t", "label"}].
        duration_s: seconds monitored (> 0); tolerance_s: slack (s) around violent segments.
    Returns:
        {alerts, violent_segments, detected, missed, onset_to_alarm_s (list), median_onset_to_alarm_s
        (None when nothing detected), false_alarms, false_alarms_per_hour, hours}.
    """
    if not (0 < duration_s < math.inf and 0 <= tolerance_s < math.inf):
        raise ValueError(f"score_alerts needs duration_s > 0 and tolerance_s >= 0, got {duration_s!r}, {tolerance_s!r}")
    tracks = {(e.source, e.cell) for e in episodes}
    if len(tracks) > 1:
        raise ValueError(f"score_alerts scores one source/cell at a time; episodes come from {sorted(tracks)}")
    segments = violent_segments(truth)
    spans = [
        (e, e.start_t, e.end_t if e.end_t is not None else max(duration_s, e.alarm_t))
        for e in sorted(episodes, key=lambda e: e.alarm_t)
    ]

    def overlaps(a0, a1, b0, b1):
        return a0 <= b1 + tolerance_s and b0 - tolerance_s <= a1

    onsets = []
    for s0, s1 in segments:
        hits = [e for e, e0, e1 in spans if overlaps(e0, e1, s0, s1)]
        if hits:
            onsets.append(max(0.0, hits[0].alarm_t - s0))
    false_alarms = sum(not any(overlaps(e0, e1, s0, s1) for s0, s1 in segments) for _, e0, e1 in spans)
    hours = duration_s / 3600.0
    return {
        "alerts": len(spans),
        "violent_segments": len(segments),
        "detected": len(onsets),
        "missed": len(segments) - len(onsets),
        "onset_to_alarm_s": onsets,
        "median_onset_to_alarm_s": float(np.median(onsets)) if onsets else None,
        "false_alarms": int(false_alarms),
        "false_alarms_per_hour": false_alarms / hours,
        "hours": hours,
    }


def track_lookup(table, source: str, cell: str):
    """A per-track table's entry for (source, cell): a dict is looked up by "source/cell",
    (source, cell), source, then cell (None if none); anything else applies to every track."""
    if table is None or not isinstance(table, Mapping):
        return table
    for key in (f"{source}/{cell}", (source, cell), source, cell):
        if key in table and key != "":
            return table[key]
    return None


def compare_policies(
    windows: Sequence[WindowScore], policies: Mapping[str, AlarmPolicy], truth, duration_s
) -> pd.DataFrame:
    """Replay the same windows through each policy and score the alerts against truth.

    Args:
        windows: windows of one or more (source, cell) tracks.
        policies: {name: policy}, e.g. {"confirmed (3 of 4)": p, "every window": p.unconfirmed()}.
        truth: the truth list of a single track, or {track key: list} (keys as ``track_lookup``).
        duration_s: seconds monitored per track: a number, {track key: number}, or None for
            the end of each track's last window.
    Returns:
        One row per policy (index "policy"): alerts, detected, violent segments, missed,
        false alarms, false alarms per hour, median onset-to-alarm (s) (NaN when none detected).
    """
    if not policies or not windows:
        raise ValueError("compare_policies needs at least one policy and some windows to replay")
    tracks = {(w.source, w.cell) for w in windows}
    if not isinstance(truth, Mapping) and len(tracks) > 1:
        raise ValueError(
            f"compare_policies: the windows come from {len(tracks)} tracks; give truth as "
            "{'source/cell': [segments]} rather than one list"
        )
    rows = []
    for name, policy in policies.items():
        totals: collections.Counter[str] = collections.Counter()
        onsets, hours = [], 0.0
        for (source, cell), confirmation in replay(windows, policy).items():
            segments = track_lookup(truth, source, cell)
            if segments is None:
                raise ValueError(
                    f"compare_policies: no truth for {source!r}/{cell!r} "
                    f"(keys tried: '{source}/{cell}', ({source!r}, {cell!r}), {source!r}, {cell!r})"
                )
            duration = track_lookup(duration_s, source, cell)
            if duration is None:
                duration = max(w.end_t for w in windows if (w.source, w.cell) == (source, cell))
            # scored on alarm periods: a false alarm that a fight follows within the cooldown is still one
            scored = score_alerts(confirmation.periods, segments, float(duration))
            totals.update({k: scored[k] for k in ("detected", "violent_segments", "missed", "false_alarms")})
            totals["alerts"] += len(confirmation.episodes)
            onsets += scored["onset_to_alarm_s"]
            hours += scored["hours"]
        rows.append(
            {
                "policy": name,
                "alerts": totals["alerts"],
                "detected": totals["detected"],
                "violent segments": totals["violent_segments"],
                "missed": totals["missed"],
                "false alarms": totals["false_alarms"],
                "false alarms per hour": totals["false_alarms"] / hours,
                "median onset-to-alarm (s)": float(np.median(onsets)) if onsets else float("nan"),
            }
        )
    return pd.DataFrame(rows).set_index("policy")
