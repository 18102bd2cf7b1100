"""One detection run: an export folder + sources -> event log, window scores, summary and per-source timelines.

Everything the detector needs about the model travels in the export (``export.json``): the streams
with their backbone and preprocessing, T, D, the window length and the operating threshold chosen
on validation. The run's ``detect_*`` parameters say how to confirm alerts and survive sources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from nexara_lib.config import stage_config
from nexara_lib.deploy.alerts import AlarmPolicy, EventLog, WindowScore
from nexara_lib.deploy.annotate import Annotator, safe_stem
from nexara_lib.deploy.detector import Detector, DetectorSettings
from nexara_lib.deploy.export import check_export_matches, load_export
from nexara_lib.deploy.grid import parse_grid
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
    rows_cols = parse_grid(grid) if isinstance(grid, str) else tuple(grid)
    cfg = stage_config(params, "deploy")  # the schema's defaults and checks for every detect_* key
    window = window_s or cfg.detect_window_s or manifest["window_s"]
    policy = AlarmPolicy.from_params(params, float(manifest["threshold"]["on"]))
    return DetectorSettings(
        window_s=float(window),
        stride=float(cfg.detect_stride),
        frames_per_window=int(manifest["input"]["T"]),
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
        **source_options: for every ``FrameSource`` (tests inject ``opener``, ``sleep``, ``clock``).
    Returns:
        ``DetectionResult``.
    """
    use_pretrained_dir(params.get("pretrained_dir"))
    head, manifest = load_export(export_dir, variant or stage_config(params, "deploy").detect_head_variant)
    if expected is not None:
        check_export_matches({**manifest["input"], "backbones": [s["backbone"] for s in manifest["streams"]]}, expected)
    specs = expand_sources(list(sources))
    settings = detector_settings(params, manifest, grid, fps=fps, realtime=realtime, window_s=window_s)
    features = features or WindowFeatures(streams_from_export(manifest))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with EventLog(out / "events.jsonl") as log:
        detector = Detector(head, features, settings, log, Annotator(out) if annotate else None)
        summary = detector.run(specs, **source_options)
    episodes = detector.episodes
    summary.update(
        settings={
            "window_s": settings.window_s,
            "stride": settings.stride,
            "grid": list(settings.grid),
            "on_threshold": settings.policy.on_threshold,
            "off_threshold": settings.policy.off_threshold,
            "confirm": f"{settings.policy.k} of {settings.policy.n}",
            "variant": head.variant,
        },
        alerts=len(episodes),
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
            )
            with atomic_path(out / f"{safe_stem(source)}.timeline.png", keep_suffix=True) as tmp:
                fig.savefig(tmp, dpi=100, bbox_inches="tight")
    return DetectionResult(summary, windows, episodes, settings, out, detector.periods, detector.windows)
