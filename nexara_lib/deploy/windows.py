"""Windows over a stream, sampled exactly as training sampled its clips.

Training read a clip of ``n`` frames at the indices ``sampled_indices(n, T, reads_next)``: T indices
spread evenly over [0, n - 1] (over [0, n - 2] for streams that also read each frame's next frame).
The detector cuts a stream into windows of ``W`` seconds (``n = round(W * fps)`` frames) every
``stride`` windows, and gives each window the same T offsets. Offsets are positions on the stream's
nominal frame grid (time ``t0 + g / fps`` for grid position ``g``); each position takes the frame
whose timestamp is nearest. For a constant-rate source, grid position ``g`` is exactly the g-th frame
of the segment, so a clip of the training length scores exactly as its offline features do; for a
variable frame rate, the frames nearest the evenly spread times are taken (spread by timestamp).

Aligned windows (``detect_align_windows``): overlapping windows share a sampled frame, and its products, only
where their positions coincide, and at ``n = round(W * fps)`` they mostly do not (T = 16 positions every 49/15
frames, windows every 25 frames: window m+1's positions fall between window m's). So ``WindowPlan.build`` tries
the lengths within (T - 1) / 2 frames of ``n``, each with the strides that shift a window by
``j = round(stride * (T - 1))`` of its sampling steps, works out with the training sampler itself which
positions every stream's window shares with the windows before it, and keeps the plan sharing the most encodes,
the nearest to the asked length at a tie. A span whose step is a whole number k of frames
(span - 1 = (T - 1) * k) is a candidate and shares T - j positions by construction; the sampler's rounding often
lets a plain stream (span n) and a reads-next stream (span n - 1) both share as many (surv_dev at 25 fps: 48
frames every 25, 8 of 16 positions each, where 50 every 25 shares 0 and 2). Every window still samples T
frames evenly over itself, as training sampled a clip of its length.

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
        window_frames: n, frames per window (``round(W * fps)``, or the aligned length).
        stride_frames: grid positions between window starts.
        offsets: per stream, the T sampled positions inside a window (``sampled_indices``).
        requested_frames: ``round(W * fps)``, the length asked for.
        aligned: the length or stride was changed so that overlapping windows share sampled frames.
    """

    fps: float
    window_frames: int
    stride_frames: int
    offsets: tuple[tuple[int, ...], ...]
    requested_frames: int = 0
    aligned: bool = False

    @classmethod
    def build(
        cls,
        fps: float,
        window_s: float,
        stride: float,
        frames_per_window: int,
        reads_next: Sequence[bool],
        align: bool = False,
        encodes: Sequence[int] | None = None,
    ) -> WindowPlan:
        """The plan of windows of ``window_s`` seconds every ``stride`` windows at ``fps``.

        Args:
            fps: nominal frames per second of the source (> 0).
            window_s: window length in seconds.
            stride: step between window starts as a fraction of the window, in (0, 1].
            frames_per_window: T, frames sampled per window.
            reads_next: per stream, whether it reads each sampled frame's next frame.
            align: choose the length and stride near the asked ones whose windows share the most sampled frames
                (module doc); else exactly ``round(window_s * fps)`` frames every ``round(n * stride)``.
            encodes: per stream, frames the backbone encodes per sampled frame (a view's regions; default 1),
                the weight of its shared positions.
        Raises:
            ValueError: a window shorter than two frames, or bad arguments.
        """
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"a window plan needs a positive frame rate, got fps={fps!r}")
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"detect_window_s must be a positive number of seconds, got {window_s!r}")
        if not 0 < stride <= 1:
            raise ValueError(f"detect_stride must be in (0, 1] (a fraction of the window), got {stride!r}")
        requested = int(round(window_s * fps))
        if requested < 2:
            raise ValueError(
                f"a window of {window_s:g} s at {fps:g} fps holds {requested} frame(s); windows need at least 2 "
                "frames: raise detect_window_s"
            )
        if not reads_next:
            raise ValueError("a window plan needs at least one stream")
        flags = [bool(r) for r in reads_next]
        weights = [1] * len(flags) if encodes is None else [int(e) for e in encodes]
        if len(weights) != len(flags):
            raise ValueError(f"encodes gives {len(weights)} stream(s) but reads_next {len(flags)}")
        plain_stride = max(1, int(round(requested * stride)))

        def ranked(n: int, stride_frames: int) -> tuple[tuple, WindowPlan]:
            """(rank, plan): the most shared encodes first; at a tie those of reads-next streams (motion views cost
            more), then the nearest length and the nearest stride."""
            plan = cls(float(fps), n, stride_frames, _offsets(n, frames_per_window, flags), requested)
            shared = [w * plan.shared_positions(i) for i, w in enumerate(weights)]
            motion = sum(x for x, r in zip(shared, flags, strict=True) if r)
            return (-sum(shared), -motion, abs(n - requested), abs(stride_frames - stride * n)), plan

        best_rank, best = ranked(requested, plain_stride)  # the asked plan wins every tie
        for n, stride_frames in _candidates(requested, frames_per_window, stride, flags) if align else []:
            rank, plan = ranked(n, stride_frames)
            if rank < best_rank:
                best_rank, best = rank, plan
        changed = (best.window_frames, best.stride_frames) != (requested, plain_stride)
        return dataclasses.replace(best, aligned=changed)

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

    def shared_positions(self, i: int) -> int:
        """Of stream ``i``'s distinct positions in a window, how many earlier windows already sampled for that
        stream (steady state, far from the segment's start): the products it reuses instead of encoding."""
        m = -(-self.window_frames // self.stride_frames) + 1  # every earlier window that overlaps window m exists
        earlier = {g for w in range(m) for g in self.targets(w)[i]}
        return len(set(self.targets(m)[i]) & earlier)

    def describe(self) -> dict:
        """The window actually used, for run summaries: length and stride (frames and seconds), whether they were
        aligned, and per stream the positions of a window that earlier windows already sampled."""
        return {
            "window_s": round(self.window_s, 6),
            "window_frames": self.window_frames,
            "requested_frames": self.requested_frames,
            "stride_s": round(self.stride_s, 6),
            "stride_frames": self.stride_frames,
            "aligned": self.aligned,
            "positions_shared_with_earlier_windows": [self.shared_positions(i) for i in range(len(self.offsets))],
        }


def _candidates(requested: int, t: int, stride: float, reads_next: Sequence[bool]) -> list[tuple[int, int]]:
    """(window frames, stride frames) an aligned plan may take: lengths within (t - 1) / 2 frames of ``requested``,
    each with the strides that shift a window by ``j = round(stride * (t - 1))`` of a stream's sampling steps
    (``j * (span - 1) / (t - 1)`` frames, rounded down and up; span = n, or n - 1 for streams reading the next
    frame). A span whose step is a whole number k of frames (span - 1 = (t - 1) * k) is among them: there the
    stride k * j makes window m+1's first t - j positions window m's last ones exactly."""
    if t < 2:
        return []
    j = max(1, math.floor(stride * (t - 1) + 0.5))  # nearest, the larger at a tie
    out = []
    for n in range(max(2, requested - (t - 1) // 2), requested + (t - 1) // 2 + 1):
        steps = {j * (_span(n, r) - 1) / (t - 1) for r in set(reads_next)}
        out += [(n, s) for s in sorted({f(x) for x in steps for f in (math.floor, math.ceil)}) if s >= 1]
    return out


def _span(n: int, reads_next: bool) -> int:
    """Frames a window of ``n`` samples over: n, or n - 1 for streams reading each frame's next frame."""
    return n - 1 if reads_next and n >= 2 else n


def _offsets(n: int, t: int, reads_next: Sequence[bool]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(i) for i in sampled_indices(n, t, r)) for r in reads_next)


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
            previous = self.previous
            chosen: _Seen
            if current is None:  # the segment ended: its last frame serves positions up to half a frame past it
                if previous is None or tau > previous.t + 0.5 / self.plan.fps:
                    break
                chosen, nxt = previous, (previous.image, True)
            elif current.t + TIME_EPSILON_S < tau:
                break  # wait for a frame at or after this position's time
            elif previous is not None and (tau - previous.t) < (current.t - tau):
                chosen, nxt = previous, (current.image, True)
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
