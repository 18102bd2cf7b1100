"""Calibrating cameras: the detector on each camera's normal footage -> its own on-threshold in ``site.json``.

``calibrate`` runs the exported model exactly as ``nexara detect`` would (same sources, grid, windows and
head) over footage the operator says is normal, records every camera's (grid cell's) window scores, and
sets each camera's on-threshold at ``detect_false_alarm_rate`` from them (``deploy.site``). A camera with
too little footage is not calibrated; the message names the minutes it needs. ``--minutes`` stops each
camera after that much footage (a live source needs it: it never ends; by default it gets the minimum).
The run's own outputs (windows, events, timelines) go to ``out_dir``, no alert evidence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from nexara_lib.config import stage_config
from nexara_lib.deploy.detect import DetectionResult, detect
from nexara_lib.deploy.export import read_export
from nexara_lib.deploy.grid import parse_grid
from nexara_lib.deploy.observers import FootageLimit
from nexara_lib.deploy.site import (
    CalibrationError,
    Site,
    camera_entry,
    default_site_path,
    export_identity,
    footage_needed,
    log_calibration,
    open_site,
    too_little,
)
from nexara_lib.deploy.source_specs import camera_key, expand_sources


@dataclasses.dataclass
class CalibrationResult:
    """The site file after calibrating, which cameras were calibrated, which had too little footage."""

    site: Site
    calibrated: list  # camera keys calibrated now
    too_little: list  # messages, one per camera with too little footage
    needed: dict  # {"windows", "minutes"} per camera
    detection: DetectionResult


def calibrate(
    sources: Sequence[str],
    export_dir: str | Path,
    params: Mapping,
    out_dir: str | Path,
    *,
    grid: str | tuple[int, int] = (1, 1),
    variant: str | None = None,
    minutes: float | None = None,
    window_s: float | None = None,
    site_path: str | Path | None = None,
    command: str = "",
    **detect_options,
) -> CalibrationResult:
    """Calibrate every camera of ``sources`` on its normal footage and write its entry into the site file.

    Args:
        sources: normal footage: files, folders, cameras, URLs, each ``NAME=SPEC`` to name its camera
            (the name ``nexara detect`` must use too).
        export_dir: the export to calibrate (its site file lives beside ``export.json``).
        params: the run's parameters (``detect_*``, ``calibrate_*``).
        out_dir: the calibration run's windows, events and timelines.
        grid: "RxC": every picture is that many cameras (``camera/cell``).
        variant: the head variant (default ``detect_head_variant``); detection must run the same one.
        minutes: stop each camera after this many minutes of footage (live sources: default the minimum).
        window_s: the window length (default ``detect_window_s``, else the export's); detection must match.
        site_path: the site file (default ``<export_dir>/site.json``).
        command: the command line, recorded in ``site-log.jsonl``.
        **detect_options: passed to ``detect`` (``expected``, ``features``, ``fps``, source options).
    Returns:
        ``CalibrationResult``.
    Raises:
        CalibrationError: a site file of another export; ``minutes`` below what the target rate needs.
    """
    cfg = stage_config(params, "deploy")
    manifest = read_export(export_dir)
    variant = variant or cfg.detect_head_variant
    if variant not in manifest["variants"]:
        raise CalibrationError(f"the export has no {variant!r} variant; exported: {sorted(manifest['variants'])}")
    window = float(window_s or cfg.detect_window_s or manifest["window_s"])
    site = open_site(site_path or default_site_path(export_dir), export_identity(manifest, variant, window))
    rate = float(cfg.detect_false_alarm_rate)
    needed = footage_needed(rate, window, cfg.detect_stride, cfg.calibrate_tail_windows, cfg.calibrate_min_minutes)
    specs = expand_sources(list(sources))
    if minutes is not None and minutes < needed["minutes"] - 1e-9:
        raise CalibrationError(
            f"--minutes {minutes:g} is too little: a {rate:.0%} false-alarm rate needs at least "
            f"{needed['minutes']:.1f} minutes of normal footage per camera ({needed['windows']} scored windows)"
        )
    if minutes is None and any(s.live for s in specs):
        minutes = needed["minutes"]
    limit = [FootageLimit(minutes * 60.0)] if minutes is not None else []
    result = detect(
        sources,
        export_dir,
        params,
        out_dir,
        grid=grid,
        variant=variant,
        window_s=window,
        evidence=False,
        observers=limit,
        **detect_options,
    )
    by_name = {s.name: s for s in specs}
    rows, cols = parse_grid(grid) if isinstance(grid, str) else tuple(grid)
    grid_facts = {
        "rows": rows,
        "cols": cols,
        "margin": int(cfg.detect_grid_margin),
        "min_cell": int(cfg.detect_min_cell),
    }
    seconds: dict[str, float] = {}
    cells: dict[str, str] = {}
    for source in result.summary["sources"]:
        spec = by_name[source["source"]]
        for cell in source["cells"]:
            key = camera_key(spec.camera_name, cell["cell"])
            seconds[key] = seconds.get(key, 0.0) + float(source["duration_s"] or 0.0)
            cells[key] = cell["cell"]
    tracks: dict[str, dict] = {}
    for w in result.window_scores:
        spec = by_name[w.source]
        key = camera_key(spec.camera_name, w.cell)
        track = tracks.setdefault(key, {"scores": [], "footage": {}})
        if w.state != "scored":
            continue
        track["scores"].append(float(w.score))
        item = track["footage"].setdefault(
            w.source,
            {
                "source": w.source,
                "path": None if spec.live else str(Path(str(spec.uri)).resolve()),
                "live": bool(spec.live),
                "start_s": w.start_t,
                "end_s": w.end_t,
                "windows": 0,
            },
        )
        item.update(start_s=min(item["start_s"], w.start_t), end_s=max(item["end_s"], w.end_t))
        item["windows"] += 1
    messages, calibrated = [], []
    export_on = float(manifest["threshold"]["on"])
    for key in sorted(set(seconds) | set(tracks)):
        track = tracks.get(key, {"scores": [], "footage": {}})
        problem = too_little(key, needed, seconds.get(key, 0.0) / 60.0, len(track["scores"]), rate)
        if problem:
            messages.append(problem)
            continue
        entry = camera_entry(
            track["scores"],
            [
                {**f, "start_s": round(f["start_s"], 4), "end_s": round(f["end_s"], 4)}
                for f in track["footage"].values()
            ],
            rate=rate,
            minutes=seconds[key] / 60.0,
            export_on=export_on,
            cell=cells.get(key, "full"),
        )
        site.cameras[key] = {**entry, "grid": grid_facts}
        calibrated.append(key)
    if calibrated:
        site.save()
        log_calibration(site, calibrated, command)
    return CalibrationResult(site, calibrated, messages, needed, result)
