"""Windows over a stream, sampled exactly as training sampled its clips.

Training read a clip of ``n`` frames at the indices ``sampled_indices(n, T, reads_next)``: T indices
spread evenly over [0, n - 1] (over [0, n - 2] for streams that also read each frame's next frame).
The detector cuts a stream into windows of ``W`` seconds (``n = round(W * fps)`` frames) every
``stride`` windows, and gives each window the same T offsets. Offsets are positions on the stream's
nominal frame grid (time ``t0 + g / fps`` for grid position ``g``); each position takes the frame
whose timestamp is nearest. For a constant-rate source, grid position ``g`` is exactly the g-th frame
of the segment, so a clip of the training length scores exactly as its offline features do; for a
variable frame rate, the frames nearest the evenly spread times are taken (spread by timestamp).

``WindowSampler`` decides grid positions as frames arrive: only the previous frame and the frames of
undecided positions are held, so memory does not grow with the length of the source.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from nexara_lib.features.clip_jobs import sampled_indices

# A frame counts as reaching a target time this close before it (timestamps in ms rounding).
TIME_EPSILON_S = 1e-6


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Where each window's sampled frames lie on the nominal frame grid.

    Attributes:
        fps: the source's nominal frame rate.
        window_frames: n, frames per window (``round(W * fps)``).
        stride_frames: grid positions between window starts.
        offsets: per stream, the T sampled positions inside a window (``sampled_indices``).
    """

    fps: float
    window_frames: int
    stride_frames: int
    offsets: tuple[tuple[int, ...], ...]

    @classmethod
    def build(
        cls, fps: float, window_s: float, stride: float, frames_per_window: int, reads_next: Sequence[bool]
    ) -> WindowPlan:
        """The plan of windows of ``window_s`` seconds every ``stride`` windows at ``fps``.

        Args:
            fps: nominal frames per second of the source (> 0).
            window_s: window length in seconds.
            stride: step between window starts as a fraction of the window, in (0, 1].
            frames_per_window: T, frames sampled per window.
            reads_next: per stream, whether it reads each sampled frame's next frame.
        Raises:
            ValueError: a window shorter than two frames, or bad arguments.
        """
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"a window plan needs a positive frame rate, got fps={fps!r}")
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"detect_window_s must be a positive number of seconds, got {window_s!r}")
        if not 0 < stride <= 1:
            raise ValueError(f"detect_stride must be in (0, 1] (a fraction of the window), got {stride!r}")
        n = int(round(window_s * fps))
        if n < 2:
            raise ValueError(
                f"a window of {window_s:g} s at {fps:g} fps holds {n} frame(s); windows need at least 2 "
                "frames: raise detect_window_s"
            )
        if not reads_next:
            raise ValueError("a window plan needs at least one stream")
        offsets = tuple(tuple(int(i) for i in sampled_indices(n, frames_per_window, bool(r))) for r in reads_next)
        return cls(float(fps), n, max(1, int(round(n * stride))), offsets)

    @property
    def window_s(self) -> float:
        return self.window_frames / self.fps

    @property
    def stride_s(self) -> float:
        return self.stride_frames / self.fps

    def start(self, m: int) -> int:
        """Grid position of window ``m``'s first frame."""
        return m * self.stride_frames

    def targets(self, m: int) -> list[tuple[int, ...]]:
        """Per stream, the grid positions window ``m`` samples."""
        s = self.start(m)
        return [tuple(s + o for o in offs) for offs in self.offsets]

    def positions(self, m: int) -> set[int]:
        """Every grid position window ``m`` needs (over all streams)."""
        return {g for per_stream in self.targets(m) for g in per_stream}


@dataclasses.dataclass
class Picked:
    """A source frame chosen for grid position ``g`` (and, once seen, the frame after it)."""

    g: int
    index: int
    t: float
    image: Any
    next_image: Any = None
    next_known: bool = False  # the frame after it arrived (or the segment ended: then it is the frame itself)


@dataclasses.dataclass
class _Seen:
    index: int
    t: float
    image: Any


class WindowSampler:
    """Assigns the frames of one segment (no gaps) to grid positions, window by window.

    Feed frames in arrival order with ``push``; it returns the positions decided by that frame. A
    position is decided when a frame at or after its time has arrived (nearest of that frame and
    the one before). ``open_windows`` lists the windows started so far; ``end`` decides what the
    last frame can still decide.
    """

    def __init__(self, plan: WindowPlan, t0: float):
        self.plan, self.t0 = plan, float(t0)
        self.next_window = 0  # the next window to open
        self.open: dict[int, set[int]] = {}  # window -> positions it still waits for (decided or not)
        self.pending: set[int] = set()  # positions needed but not decided
        self.decided: dict[int, Picked] = {}
        self.waiting_next: list[Picked] = []  # picked frames whose next frame has not arrived
        self.previous: _Seen | None = None
        self.last_index = -1

    def time_of(self, g: int) -> float:
        return self.t0 + g / self.plan.fps

    def push(self, index: int, t: float, image) -> list[Picked]:
        """Take the next frame of the segment; returns the grid positions it decided."""
        current = _Seen(index, float(t), image)
        for picked in self.waiting_next:  # this frame is the next frame of the ones picked just before it
            picked.next_image, picked.next_known = image, True
        self.waiting_next = []
        out = self._decide(current)
        self.previous = current
        self.last_index = index
        return out

    def _decide(self, current: _Seen | None) -> list[Picked]:
        out = []
        while True:
            g_pending = min(self.pending) if self.pending else math.inf
            if current is not None:
                g_open = self.plan.start(self.next_window)
                if g_open <= g_pending:
                    if self.time_of(g_open) > current.t + TIME_EPSILON_S:
                        break  # no frame has reached the next window's start (nor any later position)
                    # open a window once a frame reaches its start: every position it needs is still undecided
                    positions = self.plan.positions(self.next_window)
                    self.open[self.next_window] = positions
                    self.pending |= {g for g in positions if g not in self.decided}
                    self.next_window += 1
                    continue
            if g_pending == math.inf:
                break
            g = int(g_pending)
            tau = self.time_of(g)
            if current is None:  # the segment ended: its last frame serves positions up to half a frame past it
                if tau > self.previous.t + 0.5 / self.plan.fps:
                    break
                chosen, nxt = self.previous, (self.previous.image, True)
            elif current.t + TIME_EPSILON_S < tau:
                break  # wait for a frame at or after this position's time
            elif self.previous is not None and (tau - self.previous.t) < (current.t - tau):
                chosen, nxt = self.previous, (current.image, True)
            else:
                chosen, nxt = current, (None, False)
            picked = Picked(g, chosen.index, chosen.t, chosen.image, nxt[0], nxt[1])
            if not picked.next_known:
                self.waiting_next.append(picked)
            self.decided[g] = picked
            self.pending.discard(g)
            out.append(picked)
        return out

    def end(self) -> list[Picked]:
        """The segment ended: decide the positions its last frame still covers; frames picked last are their
        own next frame (as training pairs a clip's last frame with itself)."""
        out = self._decide(None) if self.previous is not None else []
        for picked in self.waiting_next:
            picked.next_image, picked.next_known = picked.image, True
        self.waiting_next = []
        return out

    def complete_windows(self) -> list[tuple[int, dict[int, Picked]]]:
        """Open windows whose every position is decided and whose frames know their next frame, oldest first,
        each with its picked frames by position; each is reported once (it is closed)."""
        done = [
            m
            for m, positions in sorted(self.open.items())
            if all(g in self.decided and self.decided[g].next_known for g in positions)
        ]
        out = [(m, {g: self.decided[g] for g in self.open.pop(m)}) for m in done]
        self._forget()
        return out

    def unfinished_windows(self) -> list[int]:
        """Open windows still waiting for positions (used at a gap or the end); closes them."""
        left = sorted(self.open)
        self.open.clear()
        return left

    def _forget(self) -> None:
        """Drop decided positions no open or future window needs: memory stays bounded."""
        lowest = min([min(p) for p in self.open.values()] + [self.plan.start(self.next_window)])
        for g in [g for g in self.decided if g < lowest]:
            del self.decided[g]

    def window_span(self, m: int) -> tuple[float, float]:
        """(start, end) seconds of window ``m``."""
        start = self.time_of(self.plan.start(m))
        return start, start + self.plan.window_s
