"""The streaming detector's state: its settings, and per source the reader, grid, sampler, per-frame products
and cells, with what the run summary says about each source.

``DetectorSettings`` is what ``deploy.detect`` builds from a run's parameters and export; ``SourceState`` is
one source's side of ``deploy.detector.Detector`` (which holds the run loop).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nexara_lib.config import SCHEMA
from nexara_lib.deploy.alerts import AlarmPolicy, Confirmation, WindowScore
from nexara_lib.deploy.frame_products import FrameProducts
from nexara_lib.deploy.grid import GridLayout
from nexara_lib.deploy.sources import FrameSource, SourceSpec
from nexara_lib.deploy.windows import Picked, WindowPlan, WindowSampler


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
    """How the detector cuts, samples and confirms (from the run's ``detect_*`` parameters and the export)."""

    window_s: float
    stride: float
    frames_per_window: int
    policy: AlarmPolicy
    grid: tuple[int, int] = (1, 1)
    margin: int = SCHEMA["detect_grid_margin"].default  # the parameter schema owns every default
    min_cell: int = SCHEMA["detect_min_cell"].default
    align_windows: bool = SCHEMA["detect_align_windows"].default  # overlapping windows sample the same frames
    max_gap_s: float = SCHEMA["detect_max_gap_s"].default
    stall_s: float = SCHEMA["detect_stall_s"].default
    reconnect_attempts: int = SCHEMA["detect_reconnect_attempts"].default
    fps: float | None = None  # override the sources' frame rate
    realtime: bool = False  # pace file sources at their frame rate (a camera's pace), for lag measurements


@dataclasses.dataclass
class CellState:
    name: str
    confirmation: Confirmation
    windows: int = 0
    last: WindowScore | None = None  # the latest window (annotated video)


class SourceState:
    """One source's reader, grid and per-cell windows."""

    def __init__(self, spec: SourceSpec, reader: FrameSource, settings: DetectorSettings):
        self.spec, self.reader, self.settings = spec, reader, settings
        self.layout: GridLayout | None = None
        self.cells: list[CellState] = []
        self.sampler: WindowSampler | None = None  # the open segment's sampler (None between segments)
        self.plan: WindowPlan | None = None  # the source's windows (its frame rate), built at its first frame
        self.segment = None
        self.shape: tuple[int, int] | None = None
        self.products: FrameProducts | None = None  # the segment's per-frame products, shared by its windows
        self.awaiting_next: list[Picked] = []  # picked frames whose products wait for their next frame
        self.last_t: float | None = None
        self.first_t: float | None = None
        self.wall0 = 0.0  # wall clock when the source started
        self.status, self.message = "ok", ""

    @property
    def duration_s(self) -> float:
        """Seconds from the source's first frame to its last (0 before any frame)."""
        return self.last_t - self.first_t if self.last_t is not None and self.first_t is not None else 0.0

    def running(self) -> tuple[WindowPlan, WindowSampler, FrameProducts]:
        """The open segment's window plan, sampler and per-frame products (open from a segment's first frame to
        its end)."""
        if self.plan is None or self.sampler is None or self.products is None:
            raise RuntimeError(f"{self.spec.name}: no segment of this source is open")
        return self.plan, self.sampler, self.products


def source_summary(state: SourceState) -> dict:
    """What the run summary says about one source: status, frame rate, duration, reader stats, gaps, cells."""
    reader = state.reader
    return {
        "source": state.spec.name,
        "status": state.status,
        "message": state.message,
        "fps": getattr(reader, "fps", None),
        "fps_source": getattr(reader, "fps_source", None),
        "duration_s": state.duration_s,
        "window": state.plan.describe() if state.plan is not None else None,  # the window actually used
        "stats": dict(getattr(reader, "stats", {})),
        "gaps": [dataclasses.asdict(g) for g in getattr(reader, "gaps", [])],
        "events": list(getattr(reader, "events", [])),
        "cells": [{"cell": cell.name, **cell.confirmation.summary()} for cell in state.cells],
    }


def spread(values: list[float]) -> dict:
    """Median, 95th percentile and maximum of ``values`` (None each when there are none)."""
    if not values:
        return {"median": None, "p95": None, "max": None}
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95)), "max": float(np.max(values))}
