"""The site file: each camera's own on-threshold, calibrated on its normal footage (SPEC.md "The field loop").

A threshold chosen on validation clips of other cameras is wrong for a new camera: its normal footage
scores differently. ``calibrated_threshold`` sets a camera's on-threshold from the scores of its own
normal windows, at the target false-alarm rate per window (``detect_false_alarm_rate``), with the rule
notebook 04 uses on validation (midpoints between distinct scores; the lowest threshold whose share of
windows at or above it is within the rate). A quantile in the tail needs windows in the tail:
``footage_needed`` asks for ``calibrate_tail_windows / rate`` scored windows and at least
``calibrate_min_minutes`` of footage, and too little is a ``CalibrationError`` naming the minutes needed.

``site.json`` lives beside ``export.json`` (one entry per camera, or ``camera/cell`` of a grid) and
records the export it was calibrated with (``export_identity``: the model's and the head's sha256, the
variant, window length, T and D); a site file of another export is refused, for calibrating and for
detecting alike. The file holds only what the footage determines (same footage, same bytes); when each
calibration ran goes to ``site-log.jsonl`` beside it. Written atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nexara_lib.config import SCHEMA
from nexara_lib.evaluation.thresholds import candidate_thresholds
from nexara_lib.io import read_json, to_jsonable, write_json_atomic

SITE_FILE = "site.json"
SITE_LOG = "site-log.jsonl"
FORMAT = 1
QUANTILES = (0.5, 0.9, 0.95, 0.99)  # recorded per camera as evidence of its score distribution
IDENTITY_KEYS = ("model_sha256", "variant", "head_sha256", "window_s", "T", "D")


class CalibrationError(ValueError):
    """A calibration that cannot be made or used (too little footage, a site file of another export)."""


def export_identity(manifest: Mapping, variant: str, window_s: float) -> dict:
    """What a calibration depends on: the export's model and head checksums, the variant, the window, T and D."""
    return {
        "model_sha256": str(manifest["model"]["sha256"]),
        "variant": str(variant),
        "head_sha256": str(manifest["variants"][variant]["sha256"]),
        "window_s": round(float(window_s), 6),
        "T": int(manifest["input"]["T"]),
        "D": int(manifest["input"]["D"]),
    }


def footage_needed(rate: float, window_s: float, stride: float, tail_windows: int, min_minutes: float) -> dict:
    """The least normal footage a camera needs for a threshold at ``rate``.

    Args:
        rate: target false-alarm rate per window (0, 1).
        window_s: window length (s); ``stride``: step between windows as a fraction of it.
        tail_windows: windows that must lie above the threshold (``calibrate_tail_windows``).
        min_minutes: the floor (``calibrate_min_minutes``).
    Returns:
        {"windows": scored windows needed, "minutes": footage needed (the larger of both rules)}.
    """
    if not 0 < rate < 1:
        raise CalibrationError(f"the target false-alarm rate must be in (0, 1), got {rate!r}")
    windows = math.ceil(tail_windows / rate - 1e-9)
    span_s = window_s + (windows - 1) * stride * window_s
    return {"windows": int(windows), "minutes": max(float(min_minutes), span_s / 60.0)}


def calibrated_threshold(scores: Sequence[float], rate: float) -> tuple[float, float]:
    """The lowest on-threshold whose share of ``scores`` at or above it is at most ``rate``.

    Returns:
        (threshold, the share of scores at or above it); 1.0 when even the top candidate is above 1.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise CalibrationError("no scored window to calibrate on")
    candidates = candidate_thresholds(s)
    share = np.array([np.mean(s >= t) for t in candidates])
    t = float(candidates[np.flatnonzero(share <= rate + 1e-12).min()])
    t = min(t, 1.0)
    return t, float(np.mean(s >= t))


def camera_entry(
    scores: Sequence[float], footage: Sequence[Mapping], *, rate: float, minutes: float, export_on: float, cell: str
) -> dict:
    """One camera's site entry: its threshold and the evidence (minutes, windows, quantiles, footage).

    Args:
        scores: the camera's scored window probabilities, in time order.
        footage: what it was computed on ({"source", "path", "live", "start_s", "end_s", "windows"} per source).
        rate: target false-alarm rate; ``minutes``: footage seen; ``export_on``: the export's own threshold.
        cell: the grid cell ("full" for the whole picture).
    """
    on, share = calibrated_threshold(scores, rate)
    s = np.asarray(scores, dtype=np.float64)
    quantiles = {f"p{round(q * 100):02d}": float(np.quantile(s, q)) for q in QUANTILES}
    return to_jsonable(
        {
            "on_threshold": round(on, 6),
            "export_on_threshold": round(float(export_on), 6),
            "false_alarm_rate": float(rate),
            "windows_above": int(np.sum(s >= on)),
            "share_above": round(share, 6),
            "windows": int(s.size),
            "minutes": round(float(minutes), 3),
            "quantiles": {**{k: round(v, 6) for k, v in quantiles.items()}, "max": round(float(s.max()), 6)},
            "cell": cell,
            "footage": [dict(f) for f in footage],
        }
    )


def too_little(camera: str, needed: Mapping, minutes: float, windows: int, rate: float) -> str | None:
    """The message for a camera with too little footage, or None when it has enough."""
    if windows >= needed["windows"] and minutes >= needed["minutes"] - 1e-9:
        return None
    return (
        f"camera {camera!r} needs at least {needed['minutes']:.1f} minutes of normal footage "
        f"({needed['windows']} scored windows for a {rate:.0%} false-alarm rate), got {minutes:.1f} minutes "
        f"({windows} scored windows)"
    )


@dataclasses.dataclass
class Site:
    """A site file: the export it belongs to and every calibrated camera (``cameras``: key -> entry)."""

    path: Path
    export: dict
    cameras: dict

    @classmethod
    def load(cls, path: str | Path) -> Site | None:
        """The site file at ``path`` (None when there is none); ``CalibrationError`` when it is unreadable."""
        path = Path(path)
        try:
            data = read_json(path)
        except ValueError as err:
            raise CalibrationError(str(err)) from None
        if data is None:
            return None
        if not (
            isinstance(data, dict)
            and data.get("format") == FORMAT
            and isinstance(data.get("export"), dict)
            and isinstance(data.get("cameras"), dict)
        ):
            raise CalibrationError(
                f"{path} is not a site file of format {FORMAT}; move it away and run `nexara calibrate` again"
            )
        return cls(path, data["export"], data["cameras"])

    def check_export(self, identity: Mapping) -> None:
        """Refuse a site file calibrated with another export (or variant, or window length)."""
        differs = [
            f"{key}: calibrated with {self.export.get(key)!r}, now {identity[key]!r}"
            for key in IDENTITY_KEYS
            if self.export.get(key) != identity.get(key)
        ]
        if differs:
            raise CalibrationError(
                f"site file {self.path} was calibrated with another export ({'; '.join(differs)}). Its thresholds "
                "do not fit this model: run `nexara calibrate` again on each camera's normal footage (move the old "
                "file away first), or detect without it (--site none)"
            )

    def threshold(self, key: str) -> float | None:
        """The calibrated on-threshold of camera ``key`` (``camera`` or ``camera/cell``), None if uncalibrated."""
        entry = self.cameras.get(key)
        return float(entry["on_threshold"]) if entry else None

    def save(self) -> Path:
        """Write the file atomically, cameras sorted by name (same calibrations, same bytes)."""
        cameras = {key: self.cameras[key] for key in sorted(self.cameras)}
        return write_json_atomic(self.path, {"format": FORMAT, "export": self.export, "cameras": cameras})


def open_site(path: str | Path, identity: Mapping) -> Site:
    """The site file at ``path`` for the export ``identity``: an empty one when there is none; refused when it
    belongs to another export."""
    site = Site.load(path)
    if site is None:
        return Site(Path(path), dict(identity), {})
    site.check_export(identity)
    return site


def log_calibration(site: Site, cameras: Sequence[str], command: str = "") -> None:
    """Append when these cameras were calibrated to ``site-log.jsonl`` beside the site file (one line, fsynced)."""
    line = {
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "site": site.path.name,
        "cameras": list(cameras),
        "command": command,
    }
    with open(site.path.parent / SITE_LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, ensure_ascii=True) + "\n")
        handle.flush()


def default_site_path(export_dir: str | Path) -> Path:
    """Where the site file of an export lives: beside its ``export.json``."""
    return Path(export_dir) / SITE_FILE


def min_minutes_default() -> float:
    return float(SCHEMA["calibrate_min_minutes"].default)
