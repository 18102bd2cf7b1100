"""One detection run: an export folder + sources -> event log, window scores, summary and per-source timelines.

Everything the detector needs about the model travels in the export (``export.json``): the streams
with their backbone and preprocessing, T, D, the window length and the operating threshold chosen
on validation. The run's ``detect_*`` parameters say how to confirm alerts and survive sources.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from nexara_lib.config import stage_config
from nexara_lib.deploy.alerts import AlarmPolicy, EventLog, WindowScore
from nexara_lib.deploy.annotate import Annotator, safe_stem
from nexara_lib.deploy.detector import Detector, DetectorSettings
from nexara_lib.deploy.evidence import EvidenceRecorder
from nexara_lib.deploy.export import check_export_matches, load_export
from nexara_lib.deploy.grid import parse_grid
from nexara_lib.deploy.observers import DetectorObserver
from nexara_lib.deploy.site import Site, export_identity
from nexara_lib.deploy.source_specs import camera_key
from nexara_lib.deploy.sources import expand_sources
from nexara_lib.deploy.timeline import timeline_figure
from nexara_lib.deploy.window_features import WindowFeatures
from nexara_lib.features.backbones import use_pretrained_dir
from nexara_lib.features.stream import FeatureStream
from nexara_lib.io import atomic_path, write_json_atomic


def streams_from_export(manifest: Mapping) -> list[FeatureStream]:
    """The feature streams the exported model reads, rebuilt from ``export.json``."""
    return [
        FeatureStream(
            s["backbone"],
            s["weights"],
            int(s["frames_per_clip"]),
            int(s["image_size"]),
            s["transform"],
            None,
            tuple(sorted(s.get("view_params", {}).items())),
        )
        for s in manifest["streams"]
    ]


def detector_settings(
    params: Mapping,
    manifest: Mapping,
    grid: str | tuple[int, int] = (1, 1),
    *,
    fps: float | None = None,
    realtime: bool = False,
    window_s: float | None = None,
) -> DetectorSettings:
    """Settings from the run's parameters (``detect_*``) and the export (window length, threshold, T)."""
    rows_cols = parse_grid(grid) if isinstance(grid, str) else (int(grid[0]), int(grid[1]))
    cfg = stage_config(params, "deploy")  # the schema's defaults and checks for every detect_* key
    window = window_s or cfg.detect_window_s or manifest["window_s"]
    policy = AlarmPolicy.from_params(params, float(manifest["threshold"]["on"]))
    return DetectorSettings(
        window_s=float(window),
        stride=float(cfg.detect_stride),
        frames_per_window=int(manifest["input"]["T"]),
        align_windows=bool(cfg.detect_align_windows),
        policy=policy,
        grid=rows_cols,
        margin=int(cfg.detect_grid_margin),
        min_cell=int(cfg.detect_min_cell),
        max_gap_s=float(cfg.detect_max_gap_s),
        stall_s=float(cfg.detect_stall_s),
        reconnect_attempts=int(cfg.detect_reconnect_attempts),
        fps=fps,
        realtime=realtime,
    )


def windows_used(sources: Sequence[Mapping]) -> list[dict]:
    """The distinct windows the sources ran (``WindowPlan.describe``: length and stride in seconds and frames,
    the alignment), each with the sources that ran it; a source's window depends on its frame rate."""
    used: dict[str, dict] = {}
    for source in sources:
        if source.get("window") is not None:
            key = json.dumps(source["window"], sort_keys=True)
            used.setdefault(key, {**source["window"], "sources": []})["sources"].append(source["source"])
    return list(used.values())


class _CameraPolicies:
    """Each camera's alarm policy: its calibrated on-threshold from the site file, else the export's."""

    def __init__(self, params: Mapping, settings: DetectorSettings, site: Site | None):
        self.params, self.default, self.site = params, settings.policy, site
        self._cache: dict[str, AlarmPolicy] = {}

    def __call__(self, key: str) -> AlarmPolicy:
        """The policy of camera ``key`` (``camera`` or ``camera/cell``)."""
        if key not in self._cache:
            on = self.site.threshold(key) if self.site is not None else None
            self._cache[key] = self.default if on is None else AlarmPolicy.from_params(self.params, on)
        return self._cache[key]

    def describe(self, key: str) -> tuple[float, float, str]:
        """(on, off, "site" | "export") of camera ``key``: what an alert's evidence records."""
        policy = self(key)
        calibrated = self.site is not None and self.site.threshold(key) is not None
        return policy.on_threshold, policy.off_threshold, "site" if calibrated else "export"

    def of_tracks(self, specs: Sequence, windows: Sequence[WindowScore]) -> dict:
        """{(source, cell): policy} of the tracks in ``windows`` whose policy is their own (calibrated)."""
        names = {s.name: s for s in specs}
        tracks = {(w.source, w.cell) for w in windows if w.source in names}
        policies = {t: self(camera_key(names[t[0]].camera_name, t[1])) for t in tracks}
        return {t: p for t, p in policies.items() if p is not self.default}

    def report(self, specs: Sequence, sources: Sequence[Mapping]) -> dict:
        """Which cameras ran calibrated (their thresholds) and which on the export's threshold."""
        names = {s.name: s for s in specs}
        keys = sorted(
            {
                camera_key(names[s["source"]].camera_name, c["cell"])
                for s in sources
                if s["source"] in names
                for c in s["cells"]
            }
        )
        calibrated = {
            k: self(k).on_threshold for k in keys if self.site is not None and self.site.threshold(k) is not None
        }
        return {
            "site": str(self.site.path) if self.site is not None else None,
            "calibrated": calibrated,
            "uncalibrated": [k for k in keys if k not in calibrated],
            "export_on_threshold": self.default.on_threshold,
        }


@dataclasses.dataclass
class DetectionResult:
    """What a detection run found and where it wrote it."""

    summary: dict
    windows: pd.DataFrame
    episodes: list  # alerts (pages)
    settings: DetectorSettings
    out_dir: Path
    periods: list  # every stretch an alarm was on (what alerts are scored on)
    window_scores: list  # the ``WindowScore``s behind ``windows``, in order

    @property
    def events_path(self) -> Path:
        return self.out_dir / "events.jsonl"


def windows_frame(windows: Sequence[WindowScore]) -> pd.DataFrame:
    """Window scores as the rows of ``windows.csv`` (one column per ``WindowScore`` field)."""
    columns = [f.name for f in dataclasses.fields(WindowScore)]
    return pd.DataFrame([dataclasses.asdict(w) for w in windows], columns=columns)


def expected_from_run(params: Mapping, streams: Sequence[FeatureStream]) -> dict:
    """What an export of this run must match: streams' backbones, T and D."""
    return {
        "T": int(params["frames_per_clip"]),
        "D": sum(s.feature_dim for s in streams),
        "backbones": [s.backbone for s in streams],
    }


def detect(
    sources: Sequence[str],
    export_dir: str | Path,
    params: Mapping,
    out_dir: str | Path,
    *,
    grid: str | tuple[int, int] = (1, 1),
    variant: str | None = None,
    fps: float | None = None,
    realtime: bool = False,
    window_s: float | None = None,
    expected: Mapping | None = None,
    features: WindowFeatures | None = None,
    figure: bool = True,
    annotate: bool = False,
    site: Site | None = None,
    evidence: bool = True,
    observers: Sequence[DetectorObserver] = (),
    **source_options,
) -> DetectionResult:
    """Run the exported model on ``sources`` (files, folders, camera indices, URLs).

    Args:
        sources: what to watch (see ``deploy.sources.expand_sources``).
        export_dir: an export folder (``export.json`` + heads).
        params: the run's parameters (``detect_*``, ``pretrained_dir``).
        out_dir: where ``events.jsonl``, ``windows.csv``, ``summary.json`` and ``<source>.timeline.png`` go.
        grid: "RxC" or (rows, cols): every picture is that many cameras.
        variant: the export variant to run (default ``detect_head_variant``).
        fps: override the sources' frame rate (for sources without one).
        realtime: pace files at their frame rate (lag measurements).
        window_s: override the window length (default ``detect_window_s``, else the export's).
        expected: facts the export must match (``expected_from_run``), checked before anything runs.
        features: ready ``WindowFeatures`` (tests, benchmarks); default built from the export's streams.
        figure: also save each source's timeline figure.
        annotate: also write ``<source>.annotated.mp4`` (cells outlined, scores, alarms in red).
        site: a site file (``deploy.site``): each calibrated camera alarms at its own on-threshold; refused
            when calibrated with another export, variant or window length.
        evidence: write every alert's clip, snapshot and window scores under ``out_dir/evidence``
            (``deploy.evidence``; off when ``evidence_max_mb`` is 0).
        observers: more ``DetectorObserver``s (calibration's footage limit).
        **source_options: for every ``FrameSource`` (tests inject ``opener``, ``sleep``, ``clock``).
    Returns:
        ``DetectionResult``.
    """
    use_pretrained_dir(params.get("pretrained_dir"))
    head, manifest = load_export(export_dir, variant or stage_config(params, "deploy").detect_head_variant)
    if expected is not None:
        check_export_matches(
            {**manifest["input"], "backbones": [s["backbone"] for s in manifest["streams"]]}, dict(expected)
        )
    specs = expand_sources(list(sources))
    settings = detector_settings(params, manifest, grid, fps=fps, realtime=realtime, window_s=window_s)
    if site is not None:
        site.check_export(export_identity(manifest, head.variant, settings.window_s))
    policies = _CameraPolicies(params, settings, site)
    features = features or WindowFeatures(streams_from_export(manifest))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = stage_config(params, "deploy")
    recorder = (
        EvidenceRecorder(
            out,
            grid=settings.grid,
            margin=settings.margin,
            min_cell=settings.min_cell,
            pre_s=cfg.evidence_pre_s,
            post_s=cfg.evidence_post_s,
            max_mb=cfg.evidence_max_mb,
            cell_px=cfg.evidence_cell_px,
            max_fps=cfg.evidence_max_fps,
            policy_for=policies.describe,
            source_options={"fps": settings.fps, **source_options},  # a recording is read again as the detector did
        )
        if evidence and cfg.evidence_max_mb > 0
        else None
    )
    watchers = [*observers, *([recorder] if recorder else [])]
    with EventLog(out / "events.jsonl") as log:
        detector = Detector(
            head, features, settings, log, Annotator(out) if annotate else None, observers=watchers, policies=policies
        )
        try:
            summary = detector.run(specs, **source_options)
        finally:
            evidence_counts = recorder.close() if recorder is not None else None
    episodes = detector.episodes
    summary.update(
        settings={
            "window_s": settings.window_s,
            "stride": settings.stride,
            "align_windows": settings.align_windows,
            "windows_used": windows_used(summary["sources"]),
            "grid": list(settings.grid),
            "on_threshold": settings.policy.on_threshold,
            "off_threshold": settings.policy.off_threshold,
            "confirm": f"{settings.policy.k} of {settings.policy.n}",
            "variant": head.variant,
        },
        alerts=len(episodes),
        calibration=policies.report(specs, summary["sources"]),
        evidence=evidence_counts,
    )
    windows = windows_frame(detector.windows)
    with atomic_path(out / "windows.csv") as tmp:
        windows.to_csv(tmp, index=False)
    write_json_atomic(out / "summary.json", summary)
    if figure and len(windows):
        for source in dict.fromkeys(w.source for w in detector.windows):  # one timeline per source
            fig = timeline_figure(
                [w for w in detector.windows if w.source == source],
                [e for e in episodes if e.source == source],
                settings.policy,
                title=source,
                policies=policies.of_tracks(specs, [w for w in detector.windows if w.source == source]),
            )
            with atomic_path(out / f"{safe_stem(source)}.timeline.png", keep_suffix=True) as tmp:
                fig.savefig(tmp, dpi=100, bbox_inches="tight")
    return DetectionResult(summary, windows, episodes, settings, out, detector.periods, detector.windows)
