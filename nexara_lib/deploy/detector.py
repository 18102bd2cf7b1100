"""The streaming detector: sources -> grid cells -> windows sampled as in training -> backbone -> head ->
confirmed alerts.

Every source has one reader (``deploy.sources``) and decodes each frame once. A grid picture is cut
into cells (``deploy.grid``); every cell is its own stream with its own windows, confirmation and
alerts. Each sampled frame's products (view inputs, embeddings: ``deploy.frame_products``) are computed
once, as soon as it and its next frame have arrived, all the cells due for that frame in one backbone
call, and shared by every window and stream that reads them; windows completed by a frame are scored in
one head call. A window whose picture is black or frozen is ``no_signal``; one cut by a gap (a dropped
stream, a timestamp jump, a resolution change) is ``gap``; a head failure is ``error`` — none of them is a
probability. Memory holds the products of open windows only, whatever the length of the source; the
settings and each source's state are in ``deploy.detector_state``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from nexara_lib.deploy.alerts import AlarmPolicy, Confirmation, EventLog, WindowScore
from nexara_lib.deploy.annotate import Annotator
from nexara_lib.deploy.detector_state import CellState, DetectorSettings, SourceState, source_summary, spread
from nexara_lib.deploy.frame_products import FrameProducts
from nexara_lib.deploy.grid import GridError, grid_layout, signal_problem
from nexara_lib.deploy.head import HeadError
from nexara_lib.deploy.source_specs import camera_key
from nexara_lib.deploy.sources import FrameSource, SourceError, SourceSpec
from nexara_lib.deploy.window_features import WindowFeatures
from nexara_lib.deploy.windows import WindowPlan, WindowSampler

__all__ = ["Detector", "DetectorSettings"]  # DetectorSettings lives in deploy.detector_state

# With several sources, a live one that has no new frame yields after this long (s), so the others go on.
LIVE_POLL_S = 0.02


class Detector:
    """Runs a head on windows of live or recorded video.

    Args:
        head: a ``KerasHead`` or ``TFLiteHead`` (``.predict((N, T, D)) -> (N,)``, ``.T``, ``.D``).
        features: the run's streams (``WindowFeatures``); their dims must add up to the head's D.
        settings: ``DetectorSettings``.
        log: optional ``EventLog`` receiving alerts, clears, gaps and statuses as they happen.
        annotator: optional ``Annotator`` writing every picture with its cells' scores and alarms.
        observers: ``DetectorObserver``s (``deploy.observers``) called with every frame, window and event;
            one whose ``frame`` returns False stops that source (alert evidence, calibration's footage limit).
        policies: camera key (``camera`` or ``camera/cell``) -> its ``AlarmPolicy`` (a calibrated camera's own
            threshold); default ``settings.policy`` for every camera.
    """

    def __init__(
        self,
        head,
        features: WindowFeatures,
        settings: DetectorSettings,
        log: EventLog | None = None,
        annotator: Annotator | None = None,
        observers: Sequence = (),
        policies: Callable[[str], AlarmPolicy] | None = None,
    ):
        if head.T != settings.frames_per_window or head.D != features.feature_dim:
            raise ValueError(
                f"the model reads (T={head.T}, D={head.D}) but the detector's streams give "
                f"(T={settings.frames_per_window}, D={features.feature_dim}); export and run do not match: "
                "re-run `nexara export RUN_DIR`"
            )
        self.head, self.features, self.settings, self.log = head, features, settings, log
        self.annotator = annotator
        self.observers, self.policies = list(observers), policies
        self.windows: list[WindowScore] = []
        self.head_s, self.head_calls = 0.0, 0
        self.lags: list[float] = []  # seconds from the frame that completed windows to their scores
        self.behind_s: list[float] = []  # realtime: seconds from a window's end (on the source's clock) to its score
        self.states: list[SourceState] = []
        self.wall0 = 0.0

    # ------------------------------------------------------------------ running
    def run(self, specs: Sequence[SourceSpec], **source_options) -> dict:
        """Detect on every source until all end; returns the summary.

        Live sources (cameras, streams) are read side by side, one reader each; files (recordings) one after
        another beside them, so a folder of a thousand recordings never holds a thousand open decoders.
        ``source_options`` go to every ``FrameSource`` (tests inject ``opener``, ``sleep``, ``clock``).
        """
        self.states = [
            SourceState(
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
                    if not all([o.frame(state.spec, frame) for o in self.observers]):  # every observer sees it
                        state.status, state.message = (
                            "stopped",
                            "; ".join(filter(None, (o.stop_reason(state.spec) for o in self.observers))),
                        )
                        self._end_source(state)
                        state.reader.close()
                        active.remove(item)
                        continue
                    self._take(state, frame)
                    if state.status == "error":
                        active.remove(item)
                    else:
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

    def _start(self, state: SourceState):
        """Open a source: (state, frame iterator), or None (reported) when it does not open."""
        try:
            state.reader.open()
        except SourceError as err:
            state.status, state.message = "cannot open", str(err)
            self._emit({"type": "status", "source": state.spec.name, "status": state.status, "message": str(err)})
            return None
        state.wall0 = time.perf_counter()
        return state, iter(state.reader.frames())

    def _pace(self, state: SourceState, t: float) -> None:
        """Wait until frame time ``t`` is due on the wall clock, as a camera would deliver it."""
        if state.first_t is None:
            state.first_t = t
        delay = state.wall0 + (t - state.first_t) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    # ------------------------------------------------------------------ frames
    def _take(self, state: SourceState, frame) -> None:
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
        if state.layout is None:  # never laid out (the error is reported)
            return
        if state.sampler is None:
            state.plan = state.plan or WindowPlan.build(
                state.reader.fps,
                self.settings.window_s,
                self.settings.stride,
                self.settings.frames_per_window,
                self.features.reads_next,
                align=self.settings.align_windows,
                encodes=[s.regions for s in self.features.streams],
            )
            state.sampler = WindowSampler(state.plan, frame.t)
            state.products = FrameProducts(self.features, state.plan, state.layout)
            state.segment = frame.segment
        state.last_t = frame.t
        picked = state.sampler.push(frame.index, frame.t, frame.image)
        self._frames_picked(state, picked)
        self._complete(state, state.sampler.complete_windows(), arrived=time.perf_counter())

    def _annotate(self, state: SourceState, frame) -> None:
        if self.annotator is None or state.layout is None:
            return
        cells = [
            {
                "score": c.last.score if c.last is not None else None,
                "state": c.last.state if c.last is not None else None,
                "alarm": bool(c.confirmation.alarm_on),
            }
            for c in state.cells
        ]
        self.annotator.frame(state.spec.name, frame.image, state.reader.fps, state.layout, cells)

    def _lay_out(self, state: SourceState, shape) -> bool:
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
                CellState(cell.name, Confirmation(self._policy(state.spec, cell.name), state.spec.name, cell.name))
                for cell in state.layout.cells
            ]
        return True

    def _frames_picked(self, state: SourceState, picked) -> None:
        """Products of newly picked frames once their next frame is known, every cell in one backbone call."""
        _, sampler, products = state.running()
        state.awaiting_next.extend(picked)
        ready = [p for p in state.awaiting_next if p.next_known]
        state.awaiting_next = [p for p in state.awaiting_next if not p.next_known]
        products.add(ready, sampler.open)

    # ------------------------------------------------------------------ windows
    def _complete(self, state: SourceState, done, arrived: float) -> None:
        """Score completed windows: no-signal check, the shared per-frame products, one head call for all cells."""
        if not done:
            return
        plan, sampler, products = state.running()
        batch, meta = [], []
        for m, picked in done:
            targets = plan.targets(m)
            start_t, end_t = sampler.window_span(m)
            positions = sorted(picked)
            first, last = picked[positions[0]].index, picked[positions[-1]].index
            for c, cell in enumerate(state.cells):
                problem = signal_problem(products.thumbs(c, sorted(set(targets[0]))))
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
                batch.append(products.window(m, c))
                meta.append((c, base, "scored", m))
        scores = self._score(batch)
        k = 0
        for c, base, kind, extra in meta:
            if kind == "no_signal":
                self._record(state, c, WindowScore(**base, score=None, state="no_signal", note=extra))
                continue
            if isinstance(scores, str):  # the head failed: why
                self._record(state, c, WindowScore(**base, score=None, state="error", note=scores))
            else:
                self._record(state, c, WindowScore(**base, score=float(scores[k]), state="scored"))
            k += 1
        now = time.perf_counter()
        self.lags.append(now - arrived)
        if self.settings.realtime and meta:
            self.behind_s.append(now - (state.wall0 + meta[-1][1]["end_t"] - state.first_t))
        self._forget(state)

    def _score(self, batch: list[np.ndarray]) -> np.ndarray | str:
        """The head's scores of ``batch`` (one head call), or why there are none."""
        if not batch:
            return np.zeros(0)
        t0 = time.perf_counter()
        try:
            scores = self.head.predict(np.stack(batch).astype(np.float32))
        except HeadError as err:
            return str(err)
        finally:
            self.head_s += time.perf_counter() - t0
            self.head_calls += 1
        if not np.all(np.isfinite(scores)):
            return "the model returned a non-finite score"
        return scores

    def _record(self, state: SourceState, c: int, window: WindowScore) -> None:
        cell = state.cells[c]
        cell.windows += 1
        cell.last = window
        self.windows.append(window)
        for observer in self.observers:
            observer.window(window)
        for event in cell.confirmation.update(window):
            self._emit(event)

    def _forget(self, state: SourceState) -> None:
        """Drop per-frame products below every open window (bounded memory)."""
        plan, sampler, products = state.running()
        lowest = min([min(p) for p in sampler.open.values()] + [plan.start(sampler.next_window)])
        products.forget(lowest, sampler.open)

    # ------------------------------------------------------------------ gaps and ends
    def _end_segment(self, state: SourceState, reason: str, resume_t: float) -> None:
        """A gap: finish what the segment's last frame allows; windows cut short and the gap itself are unknown."""
        if state.sampler is None:
            return
        plan, sampler, _ = state.running()
        self._frames_picked(state, sampler.end())
        self._complete(state, sampler.complete_windows(), arrived=time.perf_counter())
        cut = sampler.unfinished_windows()
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
        stride_s = plan.stride_s
        starts = [sampler.window_span(m)[0] for m in cut]
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
                        state.spec.name, state.cells[c].name, start, start + plan.window_s, None, "gap", -1, -1, reason
                    ),
                )
        state.sampler, state.segment, state.products, state.awaiting_next = None, None, None, []

    def _end_source(self, state: SourceState) -> None:
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
            window_s = state.plan.window_s if state.plan is not None else self.settings.window_s
            state.status = "too short"
            state.message = (
                f"{state.spec.name} is {state.duration_s:.1f} s long, shorter than the {window_s:.1f} s window: "
                "nothing was scored"
            )
        self._emit({"type": "status", "source": state.spec.name, "status": state.status, "message": state.message})

    def _policy(self, spec: SourceSpec, cell: str) -> AlarmPolicy:
        return self.policies(camera_key(spec.camera_name, cell)) if self.policies else self.settings.policy

    def _emit(self, event: dict) -> None:
        if self.log is not None:
            self.log.write(event)
        for observer in self.observers:
            observer.event(event)

    # ------------------------------------------------------------------ summary
    def _summary(self, states: list[SourceState], wall_s: float) -> dict:
        sources = [source_summary(state) for state in states]
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
            "lag_s": spread(self.lags),
            "behind_live_s": spread(self.behind_s),
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
