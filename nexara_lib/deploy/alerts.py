"""Alerts from window scores: k-of-n confirmation with hysteresis and cooldown, alert episodes,
per-cell status, the JSON-lines event log, and scoring alerts against ground truth.

One ``Confirmation`` per (source, cell) turns scored windows (``WindowScore``) into alert
episodes: on when k of the last n scores reach the on-threshold, off when k of the last n fall
below the off-threshold. Unscored windows (gap, no signal, model error) count as neither, so a
dropped stream neither raises nor clears an alarm; an alarm soon after an episode ended reopens
it instead of paging again. ``score_alerts``/``compare_policies`` measure alerts against truth.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import numbers
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from nexara_lib.config import SCHEMA, stage_config
from nexara_lib.io import to_jsonable
from nexara_lib.labels import CLASS_KEYS, CLASS_NAMES

STATES = ("scored", "gap", "no_signal", "error")
UNKNOWN_STATES = ("gap", "no_signal", "error")
# Times closer than this (s) are equal: truth segments that touch are one violent event.
TIME_EPS = 1e-6
SUMMARY_COLUMNS = ("source", "cell", "windows", "scored", "unknown", "gap", "no_signal", "error", "alerts",
                   "alarm_on", "status")


# --------------------------------------------------------------------------- windows and policies

@dataclasses.dataclass(frozen=True)
class WindowScore:
    """The model's verdict on one window of a source or grid cell: ``score`` in [0, 1] when ``state`` is
    "scored", else None ("gap": frames missing, "no_signal": black/frozen picture, "error": model failed)."""
    source: str
    cell: str
    start_t: float
    end_t: float
    score: float | None
    state: str
    first_frame: int
    last_frame: int
    note: str = ""

    def __post_init__(self):
        where = f"window {self.source!r}/{self.cell!r} at {self.start_t!r} s"
        if self.state not in STATES:
            raise ValueError(f"{where}: state {self.state!r} is not one of {STATES}")
        if not (math.isfinite(self.start_t) and math.isfinite(self.end_t)) or self.end_t < self.start_t:
            raise ValueError(f"{where}: needs finite start_t <= end_t, got {self.start_t!r}..{self.end_t!r}")
        if self.last_frame < self.first_frame:
            raise ValueError(f"{where}: last_frame {self.last_frame} is before first_frame {self.first_frame}")
        if self.state == "scored" and (self.score is None or not 0 <= self.score <= 1):  # NaN fails too
            raise ValueError(f"{where}: a scored window needs a score in [0, 1], got {self.score!r}")
        if self.state != "scored" and self.score is not None:
            raise ValueError(f"{where}: a {self.state!r} window has no score (got {self.score!r}); "
                             "only 'scored' windows carry one")


@dataclasses.dataclass(frozen=True)
class AlarmPolicy:
    """When scores raise and clear an alarm: on when >= k of the last n scores reach ``on_threshold``, off
    when >= k of the last n are below ``off_threshold``; an alarm within ``cooldown_s`` of an episode's
    end reopens it (no second alert)."""
    on_threshold: float
    off_threshold: float
    k: int = SCHEMA["detect_confirm_k"].default    # the parameter schema owns every default
    n: int = SCHEMA["detect_confirm_n"].default
    cooldown_s: float = SCHEMA["detect_cooldown_s"].default

    def __post_init__(self):
        on, off = self.on_threshold, self.off_threshold
        if not (math.isfinite(on) and math.isfinite(off) and 0 <= off <= on <= 1):
            raise ValueError(f"AlarmPolicy needs 0 <= off_threshold <= on_threshold <= 1, got off={off!r}, on={on!r}")
        if int(self.k) != self.k or int(self.n) != self.n or not 1 <= self.k <= self.n:
            raise ValueError(f"AlarmPolicy needs whole numbers 1 <= k <= n, got k={self.k!r}, n={self.n!r}")
        if not math.isfinite(self.cooldown_s) or self.cooldown_s < 0:
            raise ValueError(f"AlarmPolicy needs cooldown_s >= 0, got {self.cooldown_s!r}")

    @classmethod
    def from_params(cls, params: Mapping, on_threshold: float) -> "AlarmPolicy":
        """The policy of a run's parameters (detect_confirm_k, detect_confirm_n, detect_hysteresis,
        detect_cooldown_s; missing keys take the schema's defaults, every value checked by the schema);
        off = max(0, on - hysteresis)."""
        cfg = stage_config(params, "deploy")
        return cls(on_threshold=float(on_threshold), off_threshold=max(0.0, float(on_threshold) - cfg.detect_hysteresis),
                   k=int(cfg.detect_confirm_k), n=int(cfg.detect_confirm_n), cooldown_s=float(cfg.detect_cooldown_s))

    def unconfirmed(self) -> "AlarmPolicy":
        """The baseline: every window at or above the threshold alarms (k = n = 1, off = on)."""
        return dataclasses.replace(self, off_threshold=self.on_threshold, k=1, n=1)


@dataclasses.dataclass
class Episode:
    """One alert, from the earliest confirming window's start to the end of the window that turned it
    off (``end_t``, None while on); ``alarm_t``: end of the confirming window (when a guard is paged)."""
    source: str
    cell: str
    start_t: float
    alarm_t: float
    end_t: float | None
    peak: float
    first_frame: int
    last_frame: int
    windows: int


# --------------------------------------------------------------------------- confirmation

class Confirmation:
    """k-of-n confirmation of one (source, cell)'s window stream into alert episodes and events.

    Attributes:
        episodes: every episode so far (the last one is open while the alarm is on).
        events: every event returned so far.
    """

    def __init__(self, policy: AlarmPolicy, source: str, cell: str):
        self.policy, self.source, self.cell = policy, source, cell
        self.episodes: list[Episode] = []
        self.events: list[dict] = []
        self._recent: collections.deque = collections.deque(maxlen=policy.n)  # (verdict, seq, window)
        self._counts = collections.Counter()
        self._seq = 0
        self._first_seq = 0  # seq of the open episode's first window
        self._last: WindowScore | None = None
        self.alarm_on = False  # whether an episode is open now
        self._finished = False

    def _verdict(self, window: WindowScore) -> str | None:
        if window.state != "scored":
            return None
        if window.score >= self.policy.on_threshold:
            return "hit"
        return "low" if window.score < self.policy.off_threshold else None

    def _event(self, kind: str, t: float, **extra) -> dict:
        event = {"type": kind, "t": float(t), **dataclasses.asdict(self.episodes[-1]), **extra}
        self.events.append(event)
        return event

    def _turn_on(self, window: WindowScore) -> dict:
        hits = [(seq, w) for verdict, seq, w in self._recent if verdict == "hit"]
        first_seq, first = hits[-self.policy.k]  # the earliest of the k windows that confirmed
        peak = max(w.score for _, w in hits)
        last = self.episodes[-1] if self.episodes else None
        self.alarm_on = True
        if last is not None and last.end_t is not None and window.end_t - last.end_t <= self.policy.cooldown_s:
            last.end_t, last.peak = None, max(last.peak, peak)
            last.last_frame = window.last_frame
            last.windows = self._seq - self._first_seq + 1
            return self._event("reopen", window.end_t)
        self._first_seq = first_seq
        self.episodes.append(Episode(self.source, self.cell, first.start_t, window.end_t, None, peak,
                                     first.first_frame, window.last_frame, self._seq - first_seq + 1))
        return self._event("alert", window.end_t)

    def _close(self, window: WindowScore, reason: str) -> dict:
        episode = self.episodes[-1]
        episode.end_t = window.end_t
        self.alarm_on = False
        return self._event("clear", window.end_t, reason=reason)

    def update(self, window: WindowScore) -> list[dict]:
        """Feed the next window of this (source, cell).

        Args:
            window: the next window; its start_t must be after the previous window's.
        Returns:
            The events this window produced: {"type": "alert" | "clear" | "reopen", "t": time (s),
            episode fields...} ("reopen": a new alarm within the cooldown continued the last episode).
        """
        if (window.source, window.cell) != (self.source, self.cell):
            raise ValueError(f"Confirmation for {self.source!r}/{self.cell!r} got a window of "
                             f"{window.source!r}/{window.cell!r}")
        if self._finished:
            raise ValueError(f"Confirmation for {self.source!r}/{self.cell!r} is finished; it takes no more windows")
        if self._last is not None and window.start_t <= self._last.start_t:
            raise ValueError(f"{self.source!r}/{self.cell!r}: window at {window.start_t} s arrived after the "
                             f"window at {self._last.start_t} s (windows must arrive in start_t order, once each)")
        self._seq += 1
        self._last = window
        self._counts[window.state] += 1
        verdict = self._verdict(window)
        self._recent.append((verdict, self._seq, window))
        events = []
        if self.alarm_on:
            episode = self.episodes[-1]
            episode.windows = self._seq - self._first_seq + 1
            episode.last_frame = window.last_frame
            if verdict == "hit":
                episode.peak = max(episode.peak, window.score)
            lows = sum(v == "low" for v, _, _ in self._recent)
            if verdict == "low" and lows >= self.policy.k:
                events.append(self._close(window, "scores fell below the off-threshold"))
        else:
            hits = sum(v == "hit" for v, _, _ in self._recent)
            if verdict == "hit" and hits >= self.policy.k:
                events.append(self._turn_on(window))
        return events

    def finish(self) -> list[dict]:
        """End the stream; an open episode closes at the last window's end ("clear", reason "end of stream")."""
        self._finished = True
        if self.alarm_on and self._last is not None:
            return [self._close(self._last, "end of stream")]
        return []

    def summary(self) -> dict:
        """{source, cell, windows, scored, unknown, gap, no_signal, error, alerts, alarm_on, status}; status
        is "no windows", "no signal" (no_signal > half the windows), "error" (error > half), "stale"
        (unknown > half) or "ok"."""
        counts = {state: int(self._counts[state]) for state in STATES}
        total = sum(counts.values())
        unknown = sum(counts[s] for s in UNKNOWN_STATES)
        status = ("no windows" if total == 0 else "no signal" if counts["no_signal"] > total / 2
                  else "error" if counts["error"] > total / 2 else "stale" if unknown > total / 2 else "ok")
        return {"source": self.source, "cell": self.cell, "windows": total, "scored": counts["scored"],
                "unknown": unknown, "gap": counts["gap"], "no_signal": counts["no_signal"],
                "error": counts["error"], "alerts": len(self.episodes), "alarm_on": self.alarm_on, "status": status}


def replay(windows: Sequence[WindowScore], policy: AlarmPolicy) -> dict[tuple[str, str], Confirmation]:
    """Stored windows (any sources and cells) through one policy: {(source, cell): finished Confirmation}."""
    tracks: dict[tuple[str, str], list[WindowScore]] = {}
    for window in windows:
        tracks.setdefault((window.source, window.cell), []).append(window)
    out = {}
    for key, track in tracks.items():
        confirmation = Confirmation(policy, *key)
        for window in sorted(track, key=lambda w: w.start_t):
            confirmation.update(window)
        confirmation.finish()
        out[key] = confirmation
    return out


def status_table(confirmations: Mapping | Sequence[Confirmation]) -> pd.DataFrame:
    """Per-cell status: one ``Confirmation.summary`` row per (source, cell)."""
    items = confirmations.values() if isinstance(confirmations, Mapping) else confirmations
    return pd.DataFrame([c.summary() for c in items], columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- event log

class EventLog(contextlib.AbstractContextManager):
    """A JSON-lines event file: one ASCII JSON object per line, flushed (and fsynced) after each.

    A crash loses nothing already written. ``append=True`` keeps an existing file's lines.
    Use as a context manager or call ``close``.
    """

    def __init__(self, path: str | os.PathLike, append: bool = False, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._handle = open(self.path, "a" if append else "w", encoding="ascii", newline="\n")

    def write(self, event: dict) -> None:
        """Append one event (NumPy values, paths and NaN are converted; NaN becomes null)."""
        if self._handle is None:
            raise ValueError(f"EventLog {self.path} is closed")
        if not isinstance(event, Mapping):
            raise ValueError(f"EventLog.write takes a dict, got {type(event).__name__}")
        line = json.dumps(to_jsonable(dict(event)), ensure_ascii=True, allow_nan=False)
        self._handle.write(line + "\n")
        self._handle.flush()
        if self._fsync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file (idempotent); later writes are a ValueError."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- scoring against truth

def _label(value) -> int:
    if isinstance(value, str):
        text = value.strip().lower()
        for names in (CLASS_NAMES, CLASS_KEYS):
            if text in names:
                return names.index(text)
    elif isinstance(value, numbers.Real) and value in (0, 1):
        return int(value)
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


def score_alerts(episodes: Sequence[Episode], truth: Sequence[Mapping], duration_s: float,
                 tolerance_s: float = 0.0) -> dict:
    """Alerts of one source/cell against its labelled violent segments.

    An episode spans [start_t, end_t] (an open one runs to ``duration_s``). A violent segment is
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
    spans = [(e, e.start_t, e.end_t if e.end_t is not None else max(duration_s, e.alarm_t))
             for e in sorted(episodes, key=lambda e: e.alarm_t)]

    def overlaps(a0, a1, b0, b1):
        return a0 <= b1 + tolerance_s and b0 - tolerance_s <= a1

    onsets = []
    for s0, s1 in segments:
        hits = [e for e, e0, e1 in spans if overlaps(e0, e1, s0, s1)]
        if hits:
            onsets.append(max(0.0, hits[0].alarm_t - s0))
    false_alarms = sum(not any(overlaps(e0, e1, s0, s1) for s0, s1 in segments) for _, e0, e1 in spans)
    hours = duration_s / 3600.0
    return {"alerts": len(spans), "violent_segments": len(segments), "detected": len(onsets),
            "missed": len(segments) - len(onsets), "onset_to_alarm_s": onsets,
            "median_onset_to_alarm_s": float(np.median(onsets)) if onsets else None,
            "false_alarms": int(false_alarms), "false_alarms_per_hour": false_alarms / hours, "hours": hours}


def track_lookup(table, source: str, cell: str):
    """A per-track table's entry for (source, cell): a dict is looked up by "source/cell",
    (source, cell), source, then cell (None if none); anything else applies to every track."""
    if table is None or not isinstance(table, Mapping):
        return table
    for key in (f"{source}/{cell}", (source, cell), source, cell):
        if key in table and key != "":
            return table[key]
    return None


def compare_policies(windows: Sequence[WindowScore], policies: Mapping[str, AlarmPolicy], truth,
                     duration_s) -> pd.DataFrame:
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
        raise ValueError(f"compare_policies: the windows come from {len(tracks)} tracks; give truth as "
                         "{'source/cell': [segments]} rather than one list")
    rows = []
    for name, policy in policies.items():
        totals = collections.Counter()
        onsets, hours = [], 0.0
        for (source, cell), confirmation in replay(windows, policy).items():
            segments = track_lookup(truth, source, cell)
            if segments is None:
                raise ValueError(f"compare_policies: no truth for {source!r}/{cell!r} "
                                 f"(keys tried: '{source}/{cell}', ({source!r}, {cell!r}), {source!r}, {cell!r})")
            duration = track_lookup(duration_s, source, cell)
            if duration is None:
                duration = max(w.end_t for w in windows if (w.source, w.cell) == (source, cell))
            scored = score_alerts(confirmation.episodes, segments, float(duration))
            totals.update({k: scored[k] for k in ("alerts", "detected", "violent_segments", "missed", "false_alarms")})
            onsets += scored["onset_to_alarm_s"]
            hours += scored["hours"]
        rows.append({"policy": name, "alerts": totals["alerts"], "detected": totals["detected"],
                     "violent segments": totals["violent_segments"], "missed": totals["missed"],
                     "false alarms": totals["false_alarms"], "false alarms per hour": totals["false_alarms"] / hours,
                     "median onset-to-alarm (s)": float(np.median(onsets)) if onsets else float("nan")})
    return pd.DataFrame(rows).set_index("policy")
