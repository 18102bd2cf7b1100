"""Alerts from window scores: k-of-n confirmation with hysteresis and cooldown, alert episodes,
per-cell status, the JSON-lines event log, and scoring alerts against ground truth.

One ``Confirmation`` per (source, cell) turns scored windows (``WindowScore``) into alert
episodes: on when k of the last n scores reach the on-threshold, off when k of the last n fall
below the off-threshold. Unscored windows (gap, no signal, model error) count as neither, so a
dropped stream neither raises nor clears an alarm; an alarm soon after an episode ended reopens
it instead of paging again. ``deploy.alert_scoring`` measures alerts against truth.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import pandas as pd

from nexara_lib.config import SCHEMA, stage_config
from nexara_lib.io import to_jsonable

STATES = ("scored", "gap", "no_signal", "error")
UNKNOWN_STATES = ("gap", "no_signal", "error")
# Times closer than this (s) are equal: truth segments that touch are one violent event.
TIME_EPS = 1e-6
SUMMARY_COLUMNS = (
    "source",
    "cell",
    "windows",
    "scored",
    "unknown",
    "gap",
    "no_signal",
    "error",
    "alerts",
    "alarm_on",
    "status",
)


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
            raise ValueError(
                f"{where}: a {self.state!r} window has no score (got {self.score!r}); only 'scored' windows carry one"
            )


@dataclasses.dataclass(frozen=True)
class AlarmPolicy:
    """When scores raise and clear an alarm: on when >= k of the last n scores reach ``on_threshold``, off
    when >= k of the last n are below ``off_threshold``; an alarm within ``cooldown_s`` of an episode's
    end reopens it (no second alert)."""

    on_threshold: float
    off_threshold: float
    k: int = SCHEMA["detect_confirm_k"].default  # the parameter schema owns every default
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
    def from_params(cls, params: Mapping, on_threshold: float) -> AlarmPolicy:
        """The policy of a run's parameters (detect_confirm_k, detect_confirm_n, detect_hysteresis,
        detect_cooldown_s; missing keys take the schema's defaults, every value checked by the schema);
        off = max(0, on - hysteresis)."""
        cfg = stage_config(params, "deploy")
        return cls(
            on_threshold=float(on_threshold),
            off_threshold=max(0.0, float(on_threshold) - cfg.detect_hysteresis),
            k=int(cfg.detect_confirm_k),
            n=int(cfg.detect_confirm_n),
            cooldown_s=float(cfg.detect_cooldown_s),
        )

    def unconfirmed(self) -> AlarmPolicy:
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
        episodes: every episode so far, one per alert (page); the last one is open while the alarm is on.
        periods: every stretch the alarm was on, as episodes of their own: an alarm within the cooldown
            continues its episode (no second page) but is still a period, so scoring sees it (a false alarm
            followed by a fight within the cooldown is still a false alarm).
        events: every event returned so far.
    """

    def __init__(self, policy: AlarmPolicy, source: str, cell: str):
        self.policy, self.source, self.cell = policy, source, cell
        self.episodes: list[Episode] = []
        self.periods: list[Episode] = []
        self.events: list[dict] = []
        self._recent: collections.deque = collections.deque(maxlen=policy.n)  # (verdict, seq, window)
        self._counts: collections.Counter[str] = collections.Counter()  # windows per state
        self._seq = 0
        self._first_seq = 0  # seq of the open episode's first window
        self._last: WindowScore | None = None
        self.alarm_on = False  # whether an episode is open now
        self._finished = False

    @staticmethod
    def _score(window: WindowScore) -> float:
        """The score of a "scored" window (``WindowScore`` checks it has one, so None here is a bug)."""
        if window.score is None:
            raise ValueError(
                f"window {window.source!r}/{window.cell!r} at {window.start_t!r} s is {window.state!r} and has no "
                "score; only 'scored' windows can raise or clear an alarm"
            )
        return window.score

    def _verdict(self, window: WindowScore) -> str | None:
        if window.state != "scored":
            return None
        score = self._score(window)
        if score >= self.policy.on_threshold:
            return "hit"
        return "low" if score < self.policy.off_threshold else None

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
        self.periods.append(
            Episode(
                self.source,
                self.cell,
                first.start_t,
                window.end_t,
                None,
                peak,
                first.first_frame,
                window.last_frame,
                self._seq - first_seq + 1,
            )
        )
        if last is not None and last.end_t is not None and window.end_t - last.end_t <= self.policy.cooldown_s:
            last.end_t, last.peak = None, max(last.peak, peak)
            last.last_frame = window.last_frame
            last.windows = self._seq - self._first_seq + 1
            return self._event("reopen", window.end_t)
        self._first_seq = first_seq
        self.episodes.append(
            Episode(
                self.source,
                self.cell,
                first.start_t,
                window.end_t,
                None,
                peak,
                first.first_frame,
                window.last_frame,
                self._seq - first_seq + 1,
            )
        )
        return self._event("alert", window.end_t)

    def _close(self, window: WindowScore, reason: str) -> dict:
        episode = self.episodes[-1]
        episode.end_t = window.end_t
        self.periods[-1].end_t = window.end_t
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
            raise ValueError(
                f"Confirmation for {self.source!r}/{self.cell!r} got a window of {window.source!r}/{window.cell!r}"
            )
        if self._finished:
            raise ValueError(f"Confirmation for {self.source!r}/{self.cell!r} is finished; it takes no more windows")
        if self._last is not None and window.start_t <= self._last.start_t:
            raise ValueError(
                f"{self.source!r}/{self.cell!r}: window at {window.start_t} s arrived after the "
                f"window at {self._last.start_t} s (windows must arrive in start_t order, once each)"
            )
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
            period = self.periods[-1]
            period.windows += 1
            period.last_frame = window.last_frame
            if verdict == "hit":
                score = self._score(window)
                episode.peak = max(episode.peak, score)
                period.peak = max(period.peak, score)
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
        status = (
            "no windows"
            if total == 0
            else "no signal"
            if counts["no_signal"] > total / 2
            else "error"
            if counts["error"] > total / 2
            else "stale"
            if unknown > total / 2
            else "ok"
        )
        return {
            "source": self.source,
            "cell": self.cell,
            "windows": total,
            "scored": counts["scored"],
            "unknown": unknown,
            "gap": counts["gap"],
            "no_signal": counts["no_signal"],
            "error": counts["error"],
            "alerts": len(self.episodes),
            "alarm_on": self.alarm_on,
            "status": status,
        }


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
        self._handle: TextIO | None = open(self.path, "a" if append else "w", encoding="ascii", newline="\n")

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
