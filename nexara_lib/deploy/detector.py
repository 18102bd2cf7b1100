"""The streaming detector: sources -> grid cells -> windows sampled as in training -> backbone -> head ->
confirmed alerts.

Every source has one reader (``deploy.sources``) and decodes each frame once. A grid picture is cut
into cells (``deploy.grid``); every cell is its own stream with its own windows, confirmation and
alerts. Each sampled frame's backbone inputs are computed as soon as it arrives, all the cells
due for that frame in one backbone call; windows completed by a frame are scored in one head call.
A window whose picture is black or frozen is ``no_signal``; one cut by a gap (a dropped stream, a
timestamp jump, a resolution change) is ``gap``; a head failure is ``error`` — none of them is a
probability. Memory holds the frames of open windows only, whatever the length of the source.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from nexara_lib.config import SCHEMA
from nexara_lib.deploy.alerts import AlarmPolicy, Confirmation, EventLog, WindowScore
from nexara_lib.deploy.annotate import Annotator
from nexara_lib.deploy.grid import GridError, grid_layout, signal_problem, split_cells, thumbnail
from nexara_lib.deploy.head import HeadError
from nexara_lib.deploy.sources import FrameSource, SourceError, SourceSpec
from nexara_lib.deploy.window_features import WindowFeatures
from nexara_lib.deploy.windows import WindowPlan, WindowSampler

# With several sources, a live one that has no new frame yields after this long (s), so the others go on.
LIVE_POLL_S = 0.02


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
    max_gap_s: float = SCHEMA["detect_max_gap_s"].default
    stall_s: float = SCHEMA["detect_stall_s"].default
    reconnect_attempts: int = SCHEMA["detect_reconnect_attempts"].default
    fps: float | None = None  # override the sources' frame rate
    realtime: bool = False  # pace file sources at their frame rate (a camera's pace), for lag measurements


@dataclasses.dataclass
class _Cell:
    name: str
    confirmation: Confirmation
    features: dict = dataclasses.field(default_factory=dict)  # (stream, g) -> (D,)
    thumbs: dict = dataclasses.field(default_factory=dict)  # g -> thumbnail
    windows: int = 0
    last: WindowScore | None = None  # the latest window (annotated video)


class _SourceState:
    """One source's reader, grid and per-cell windows."""

    def __init__(self, spec: SourceSpec, reader: FrameSource, settings: DetectorSettings):
        self.spec, self.reader, self.settings = spec, reader, settings
        self.layout = None
        self.cells: list[_Cell] = []
        self.sampler: WindowSampler | None = None
        self.plan: WindowPlan | None = None
        self.segment = None
        self.shape = None
        self.awaiting_next = []  # picked frames whose per-frame features wait for their next frame
        self.last_t = None
        self.first_t = None
        self.wall0 = 0.0  # wall clock when the source started
        self.status, self.message = "ok", ""


class Detector:
    """Runs a head on windows of live or recorded video.

    Args:
        head: a ``KerasHead`` or ``TFLiteHead`` (``.predict((N, T, D)) -> (N,)``, ``.T``, ``.D``).
        features: the run's streams (``WindowFeatures``); their dims must add up to the head's D.
        settings: ``DetectorSettings``.
        log: optional ``EventLog`` receiving alerts, clears, gaps and statuses as they happen.
        annotator: optional ``Annotator`` writing every picture with its cells' scores and alarms.
    """

    def __init__(
        self,
        head,
        features: WindowFeatures,
        settings: DetectorSettings,
        log: EventLog | None = None,
        annotator: Annotator | None = None,
    ):
        if head.T != settings.frames_per_window or head.D != features.feature_dim:
            raise ValueError(
                f"the model reads (T={head.T}, D={head.D}) but the detector's streams give "
                f"(T={settings.frames_per_window}, D={features.feature_dim}); export and run do not match: "
                "re-run `nexara export RUN_DIR`"
            )
        self.head, self.features, self.settings, self.log = head, features, settings, log
        self.annotator = annotator
        self.windows: list[WindowScore] = []
        self.head_s, self.head_calls = 0.0, 0
        self.lags: list[float] = []  # seconds from the frame that completed windows to their scores
        self.behind_s: list[float] = []  # realtime: seconds from a window's end (on the source's clock) to its score
        self.states: list[_SourceState] = []
        self.wall0 = 0.0

    # ------------------------------------------------------------------ running
    def run(self, specs: Sequence[SourceSpec], **source_options) -> dict:
        """Detect on every source until all end; returns the summary.

        Live sources (cameras, streams) are read side by side, one reader each; files (recordings) one after
        another beside them, so a folder of a thousand recordings never holds a thousand open decoders.
        ``source_options`` go to every ``FrameSource`` (tests inject ``opener``, ``sleep``, ``clock``).
        """
        self.states = [
            _SourceState(
                spec,
                FrameSource(
                    spec,
                    fps=self.settings.fps,
                    max_gap_s=self.settings.max_gap_s,
                    stall_s=self.settings.stall_s,
                    reconnect_attempts=self.settings.reconnect_attempts,
                    **source_options,
                ),
                self.settings,
            )
            for spec in specs
        ]
        files = [s for s in self.states if not s.spec.live]
        if sum(s.spec.live for s in self.states) + bool(files) > 1:
            for state in self.states:  # a camera in back-off must not hold up the others
                state.reader.poll_s = LIVE_POLL_S
        active = [item for item in (self._start(s) for s in self.states if s.spec.live) if item]
        self.wall0 = time.perf_counter()
        try:
            while active or files:
                while files and not any(not s.spec.live for s, _ in active):
                    item = self._start(files.pop(0))
                    if item:
                        active.append(item)
                for item in list(active):
                    state, frames = item
                    try:
                        frame = next(frames)
                    except StopIteration:
                        self._end_source(state)
                        active.remove(item)
                        continue
                    if frame is None:  # a live source with nothing new yet
                        continue
                    if self.settings.realtime:
                        self._pace(state, frame.t)
                    self._take(state, frame)
                    if state.status == "error":
                        active.remove(item)
                    elif self.annotator is not None and state.layout is not None:
                        self._annotate(state, frame)
        except BaseException:
            if self.annotator is not None:
                self.annotator.abort()
            raise
        finally:
            for state in self.states:
                state.reader.close()
        if self.annotator is not None:
            self.annotator.close()
        return self._summary(self.states, time.perf_counter() - self.wall0)

    def _start(self, state: _SourceState):
        """Open a source: (state, frame iterator), or None (reported) when it does not open."""
        try:
            state.reader.open()
        except SourceError as err:
            state.status, state.message = "cannot open", str(err)
            self._emit({"type": "status", "source": state.spec.name, "status": state.status, "message": str(err)})
            return None
        state.wall0 = time.perf_counter()
        return state, iter(state.reader.frames())

    def _pace(self, state: _SourceState, t: float) -> None:
        """Wait until frame time ``t`` is due on the wall clock, as a camera would deliver it."""
        if state.first_t is None:
            state.first_t = t
        delay = state.wall0 + (t - state.first_t) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    # ------------------------------------------------------------------ frames
    def _take(self, state: _SourceState, frame) -> None:
        if state.first_t is None:
            state.first_t = frame.t
        shape = frame.image.shape[:2]
        if state.shape is not None and shape != state.shape:
            self._end_segment(
                state, f"picture size changed from {state.shape[1]}x{state.shape[0]} to {shape[1]}x{shape[0]}", frame.t
            )
        if state.shape != shape:
            if not self._lay_out(state, shape):
                return
        if state.segment is not None and frame.segment != state.segment:
            self._end_segment(state, "gap in the source", frame.t)
        if state.sampler is None:
            state.plan = state.plan or WindowPlan.build(
                state.reader.fps,
                self.settings.window_s,
                self.settings.stride,
                self.settings.frames_per_window,
                self.features.reads_next,
            )
            state.sampler = WindowSampler(state.plan, frame.t)
            state.segment = frame.segment
        state.last_t = frame.t
        picked = state.sampler.push(frame.index, frame.t, frame.image)
        self._frames_picked(state, picked)
        self._complete(state, state.sampler.complete_windows(), arrived=time.perf_counter())

    def _annotate(self, state: _SourceState, frame) -> None:
        cells = [
            {
                "score": c.last.score if c.last is not None else None,
                "state": c.last.state if c.last is not None else None,
                "alarm": bool(c.confirmation.alarm_on),
            }
            for c in state.cells
        ]
        self.annotator.frame(state.spec.name, frame.image, state.reader.fps, state.layout, cells)

    def _lay_out(self, state: _SourceState, shape) -> bool:
        rows, cols = self.settings.grid
        try:
            state.layout = grid_layout(shape[0], shape[1], rows, cols, self.settings.margin, self.settings.min_cell)
        except GridError as err:
            state.status, state.message = "error", f"{state.spec.name}: {err}"
            self._emit({"type": "status", "source": state.spec.name, "status": "error", "message": state.message})
            return False
        state.shape = shape
        if not state.cells:
            state.cells = [
                _Cell(cell.name, Confirmation(self.settings.policy, state.spec.name, cell.name))
                for cell in state.layout.cells
            ]
        return True

    def _frames_picked(self, state: _SourceState, picked) -> None:
        """Thumbnails and per-frame backbone inputs of newly picked frames, every cell in one backbone call."""
        state.awaiting_next.extend(picked)
        ready = [p for p in state.awaiting_next if p.next_known]
        state.awaiting_next = [p for p in state.awaiting_next if not p.next_known]
        jobs = []
        for p in ready:
            crops = split_cells(p.image, state.layout)
            nexts = split_cells(p.next_image, state.layout) if p.next_image is not None else crops
            for c, cell in enumerate(state.cells):
                cell.thumbs[p.g] = thumbnail(crops[c])
                for i in range(len(self.features.streams)):
                    if not self.features.window_level(i) and (i, p.g) not in cell.features:
                        jobs.append(((c, i, p.g), i, self.features.frame_job(i, crops[c], nexts[c])))
        for (c, i, g), rows in self.features.encode(jobs).items():
            state.cells[c].features[(i, g)] = self.features.pooled(i, rows, 1)[0]
        if not self.features.needs_native_frames:
            for p in ready:  # nothing needs the picture any more: free it now
                p.image = p.next_image = None

    # ------------------------------------------------------------------ windows
    def _complete(self, state: _SourceState, done, arrived: float) -> None:
        """Score completed windows: no-signal check, window-level streams, one head call for all cells."""
        if not done:
            return
        plan, sampler = state.plan, state.sampler
        batch, meta = [], []
        window_jobs = []
        for m, picked in done:
            targets = plan.targets(m)
            start_t, end_t = sampler.window_span(m)
            positions = sorted(picked)
            first, last = picked[positions[0]].index, picked[positions[-1]].index
            # window-level streams read native cells: cut each picked frame (and its next) once, not per cell
            cells_of = (
                {
                    g: (split_cells(p.image, state.layout), split_cells(p.next_image, state.layout))
                    for g, p in picked.items()
                }
                if self.features.needs_native_frames
                else {}
            )
            for c, cell in enumerate(state.cells):
                problem = signal_problem([cell.thumbs[g] for g in sorted(set(targets[0]))])
                base = dict(
                    source=state.spec.name,
                    cell=cell.name,
                    start_t=start_t,
                    end_t=end_t,
                    first_frame=first,
                    last_frame=last,
                )
                if problem:
                    meta.append((c, base, "no_signal", f"picture {problem}"))
                    continue
                for i in range(len(self.features.streams)):
                    if self.features.window_level(i):
                        crops = [cells_of[g][0][c] for g in targets[i]]
                        nexts = [cells_of[g][1][c] for g in targets[i]]
                        window_jobs.append(((m, c, i), i, self.features.window_job(i, crops, nexts)))
                meta.append((c, base, "scored", (m, targets)))
        window_feats = self.features.encode(window_jobs) if window_jobs else {}
        for c, base, kind, extra in meta:
            if kind != "scored":
                continue
            m, targets = extra
            cell = state.cells[c]
            parts = []
            for i in range(len(self.features.streams)):
                if self.features.window_level(i):
                    parts.append(self.features.pooled(i, window_feats[(m, c, i)], len(targets[i])))
                else:
                    parts.append(np.stack([cell.features[(i, g)] for g in targets[i]]))
            batch.append(np.concatenate(parts, axis=1))
        scores, error = self._score(batch)
        k = 0
        for c, base, kind, extra in meta:
            if kind == "no_signal":
                self._record(state, c, WindowScore(**base, score=None, state="no_signal", note=extra))
                continue
            if error is not None:
                self._record(state, c, WindowScore(**base, score=None, state="error", note=error))
            else:
                self._record(state, c, WindowScore(**base, score=float(scores[k]), state="scored"))
            k += 1
        now = time.perf_counter()
        self.lags.append(now - arrived)
        if self.settings.realtime and meta:
            self.behind_s.append(now - (state.wall0 + meta[-1][1]["end_t"] - state.first_t))
        self._forget(state)

    def _score(self, batch: list[np.ndarray]) -> tuple[np.ndarray | None, str | None]:
        if not batch:
            return None, None
        t0 = time.perf_counter()
        try:
            scores = self.head.predict(np.stack(batch).astype(np.float32))
        except HeadError as err:
            return None, str(err)
        finally:
            self.head_s += time.perf_counter() - t0
            self.head_calls += 1
        if not np.all(np.isfinite(scores)):
            return None, "the model returned a non-finite score"
        return scores, None

    def _record(self, state: _SourceState, c: int, window: WindowScore) -> None:
        cell = state.cells[c]
        cell.windows += 1
        cell.last = window
        self.windows.append(window)
        for event in cell.confirmation.update(window):
            self._emit(event)

    def _forget(self, state: _SourceState) -> None:
        """Drop per-frame features and thumbnails below every open window (bounded memory)."""
        sampler = state.sampler
        lowest = min([min(p) for p in sampler.open.values()] + [state.plan.start(sampler.next_window)])
        for cell in state.cells:
            for key in [k for k in cell.features if k[1] < lowest]:
                del cell.features[key]
            for g in [g for g in cell.thumbs if g < lowest]:
                del cell.thumbs[g]

    # ------------------------------------------------------------------ gaps and ends
    def _end_segment(self, state: _SourceState, reason: str, resume_t: float) -> None:
        """A gap: finish what the segment's last frame allows; windows cut short and the gap itself are unknown."""
        if state.sampler is None:
            return
        self._frames_picked(state, state.sampler.end())
        self._complete(state, state.sampler.complete_windows(), arrived=time.perf_counter())
        cut = state.sampler.unfinished_windows()
        gap_start = state.last_t if state.last_t is not None else resume_t
        self._emit(
            {
                "type": "gap",
                "source": state.spec.name,
                "start_t": gap_start,
                "end_t": resume_t,
                "reason": reason,
                "windows_cut": len(cut),
            }
        )
        stride_s = state.plan.stride_s
        starts = [state.sampler.window_span(m)[0] for m in cut]
        fill = gap_start + stride_s
        while fill + stride_s <= resume_t:  # windows that would have covered the gap
            starts.append(fill)
            fill += stride_s
        for start in starts:
            for c in range(len(state.cells)):
                self._record(
                    state,
                    c,
                    WindowScore(
                        state.spec.name,
                        state.cells[c].name,
                        start,
                        start + state.plan.window_s,
                        None,
                        "gap",
                        -1,
                        -1,
                        reason,
                    ),
                )
        for cell in state.cells:
            cell.features.clear()
            cell.thumbs.clear()
        state.sampler, state.segment, state.awaiting_next = None, None, []

    def _end_source(self, state: _SourceState) -> None:
        if state.sampler is not None:
            self._frames_picked(state, state.sampler.end())
            self._complete(state, state.sampler.complete_windows(), arrived=time.perf_counter())
            state.sampler.unfinished_windows()  # the source ended: a trailing partial window is not a gap
        for cell in state.cells:
            for event in cell.confirmation.finish():
                self._emit(event)
        reader = state.reader
        if reader.status not in ("ok", "ended") and state.status == "ok":
            state.status, state.message = reader.status, reader.message
        if state.status == "ok" and not any(c.windows for c in state.cells):
            duration = (state.last_t - state.first_t) if state.last_t is not None else 0.0
            state.status = "too short"
            state.message = (
                f"{state.spec.name} is {duration:.1f} s long, shorter than the {self.settings.window_s:.1f} s "
                "window: nothing was scored"
            )
        self._emit({"type": "status", "source": state.spec.name, "status": state.status, "message": state.message})

    def _emit(self, event: dict) -> None:
        if self.log is not None:
            self.log.write(event)

    # ------------------------------------------------------------------ summary
    def _summary(self, states: list[_SourceState], wall_s: float) -> dict:
        sources = []
        for state in states:
            reader = state.reader
            duration = (state.last_t - state.first_t) if state.last_t is not None else 0.0
            cells = [{"cell": cell.name, **cell.confirmation.summary()} for cell in state.cells]
            sources.append(
                {
                    "source": state.spec.name,
                    "status": state.status,
                    "message": state.message,
                    "fps": getattr(reader, "fps", None),
                    "fps_source": getattr(reader, "fps_source", None),
                    "duration_s": duration,
                    "stats": dict(getattr(reader, "stats", {})),
                    "gaps": [dataclasses.asdict(g) for g in getattr(reader, "gaps", [])],
                    "events": list(getattr(reader, "events", [])),
                    "cells": cells,
                }
            )
        source_s = sum(s["duration_s"] for s in sources)
        return {
            "sources": sources,
            "windows": len(self.windows),
            "wall_s": wall_s,
            "realtime_factor": source_s / wall_s if wall_s > 0 else None,
            "backbone": {
                "calls": self.features.calls,
                "frames": self.features.frames,
                "seconds": self.features.model_s,
            },
            "head": {"calls": self.head_calls, "seconds": self.head_s},
            "lag_s": _spread(self.lags),
            "behind_live_s": _spread(self.behind_s),
        }

    @property
    def episodes(self) -> list:
        """Every alert episode (page) of every source and cell, in time order."""
        found = [e for s in self.states for c in s.cells for e in c.confirmation.episodes]
        return sorted(found, key=lambda e: (e.alarm_t, e.source, e.cell))

    @property
    def periods(self) -> list:
        """Every stretch an alarm was on, of every source and cell, in time order (``Confirmation.periods``)."""
        found = [e for s in self.states for c in s.cells for e in c.confirmation.periods]
        return sorted(found, key=lambda e: (e.alarm_t, e.source, e.cell))


def _spread(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p95": None, "max": None}
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95)), "max": float(np.max(values))}
