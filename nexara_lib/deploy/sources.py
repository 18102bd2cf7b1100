"""Frame sources of the detector: what to open, and reading it as timed RGB frames that survive bad input.

``expand_sources`` turns files, folders, camera indices and stream URLs into ``SourceSpec``s (a URL's
credentials masked in every name, message and repr). ``FrameSource`` reads one: a file in the caller's
thread, never dropping, timed by its container's timestamps; a live source in one background thread
into a bounded queue that drops the OLDEST frame when the consumer lags, timed by a monotonic clock,
reconnecting with back-off ``0.5 * 2**k`` s after a read failure or ``stall_s`` without a usable frame.
Frames are converted as training decoded them (``video.reader.to_rgb``); odd ones are converted or
skipped and counted, never raised. Every gap (timestamp jump over ``max_gap_s``, backwards timestamp,
reconnect) starts a new segment, so windows never span two. Only counters grow per frame.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import statistics
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np

from nexara_lib.config import SCHEMA
from nexara_lib.deploy.source_specs import (  # noqa: F401  (re-exported: callers import them from here)
    LIVE_SCHEMES,
    VIDEO_EXTENSIONS,
    SourceError,
    SourceSpec,
    expand_sources,
    mask_credentials,
)
from nexara_lib.video.reader import to_rgb

MAX_FPS = 240.0  # a container frame rate above this (or <= 0) is not believed
FPS_PROBE_FRAMES = 8  # frames read on opening to estimate a missing frame rate
MAX_BAD_IN_ROW = 1000  # a file yielding this many unusable frames in a row is broken
MAX_RECORDS = 500  # gaps and events kept (each); later ones are only counted
JOIN_TIMEOUT_S = 5.0  # close() waits this long for the reader thread (a daemon)


@dataclasses.dataclass(frozen=True)
class Frame:
    """A delivered frame: arrival index, seconds, (H, W, 3) uint8 RGB image, segment number."""

    index: int
    t: float
    image: np.ndarray = dataclasses.field(repr=False, compare=False)
    segment: int


@dataclasses.dataclass(frozen=True)
class Gap:
    """A hole between two delivered frames (the later one starts a new segment)."""

    start_t: float
    end_t: float
    reason: str


def _default_opener(uri: str | int, live: bool, timeout_s: float):
    """``cv2.VideoCapture``; a stream URL gets FFmpeg open/read timeouts, so a hung stream fails a read."""
    if live and isinstance(uri, str):
        ms = max(1, int(timeout_s * 1000))
        return cv2.VideoCapture(
            uri, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        )
    return cv2.VideoCapture(uri)


class FrameSource:
    """One source read as ``Frame``s (see the module docstring); also a context manager."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        fps: float | None = None,
        max_gap_s: float = SCHEMA["detect_max_gap_s"].default,
        stall_s: float = SCHEMA["detect_stall_s"].default,
        reconnect_attempts: int = SCHEMA["detect_reconnect_attempts"].default,
        opener=None,
        sleep=time.sleep,
        clock=time.monotonic,
        queue_frames: int = 64,
    ):
        if not (
            (fps is None or 0 < fps < math.inf)
            and min(max_gap_s, stall_s) > 0
            and reconnect_attempts >= 0
            and queue_frames >= 1
        ):
            raise SourceError(
                f"{spec.name}: fps={fps} (or None), max_gap_s={max_gap_s}, stall_s={stall_s} must be "
                f"> 0, reconnect_attempts={reconnect_attempts} >= 0, queue_frames={queue_frames} >= 1"
            )
        self.spec, self.name, self.max_gap_s, self.stall_s = spec, spec.name, float(max_gap_s), float(stall_s)
        self.reconnect_attempts, self.queue_frames = int(reconnect_attempts), int(queue_frames)
        self._opener = opener or (lambda uri: _default_opener(uri, spec.live, stall_s))
        self._sleep, self._clock = sleep, clock
        self.fps, self.fps_source = (float(fps), "given") if fps is not None else (float("nan"), "")
        self.gaps: list[Gap] = []
        self.events: list[dict] = []  # {"t", "event", ...}
        self.stats = {"frames": 0, "bad_frames": 0, "converted": 0, "dropped": 0, "reconnects": 0, "unrecorded": 0}
        self.status, self.message = "ok", ""
        self.poll_s: float | None = None  # live: yield None after this long without a frame (None = wait)
        self._cap: cv2.VideoCapture | None = None  # or what ``opener`` returned (tests: a fake capture)
        self._t0 = 0.0
        self._thread: threading.Thread | None = None
        self._opened = self._started = self._closed = self._reader_done = False
        self._pending: collections.deque = collections.deque()  # (ok, raw, pos_ms, arrival) read on opening
        self._queue: collections.deque = collections.deque()  # live: (t, image, gap reason) for the consumer
        self._cond, self._stop = threading.Condition(), threading.Event()
        self._size: tuple[int, int] | None = None  # (w, h) of the last usable frame
        self._read_count = self._stamp_reads = 0  # file timing: successful reads (usable or not),
        self._prev_raw: float | None = None  # the last container stamp and t
        self._prev_t: float | None = None
        self._last_t: float | None = None  # delivery side: last delivered t, segment
        self._segment = self._dropped_at_last = 0

    def open(self) -> None:
        """Open the capture and settle ``fps`` (no-op when open); SourceError if it does not open or has no fps."""
        if self._closed:
            raise SourceError(f"{self.name} is closed; make a new FrameSource to read it again")
        if self._opened:
            return
        self._cap = self._try_open()
        if self._cap is None:
            why = (
                f"no camera at index {self.spec.uri}, or it is busy in another program"
                if isinstance(self.spec.uri, int)
                else "URL unreachable, credentials refused or not a video stream; try it in a player (VLC, ffplay)"
                if self.spec.live
                else "the file is missing, empty, corrupt or not a video"
            )
            raise SourceError(f"cannot open {self.name}: {why}")
        self._t0 = self._clock()
        try:
            self._settle_fps(self._cap)
        except SourceError:
            self._release()  # and the frames read to measure the rate; open() may be tried again
            raise
        self._opened = True

    def _try_open(self):
        try:
            cap = self._opener(self.spec.uri)
        except Exception as exc:  # noqa: BLE001 - a broken backend just "does not open"
            self._record(self.events, {"t": self._now(), "event": "open_error", "error": mask_credentials(exc)})
            return None
        if cap is not None and not cap.isOpened():
            cap.release()
        return cap if cap is not None and cap.isOpened() else None

    def _settle_fps(self, cap: cv2.VideoCapture) -> None:
        stored = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if self.fps_source != "given" and math.isfinite(stored) and 0 < stored <= MAX_FPS:
            self.fps, self.fps_source = stored, "container"
        if self.fps_source:
            return
        for _ in range(FPS_PROBE_FRAMES):
            ok, raw, pos_ms = self._read_raw()
            self._pending.append((ok, raw, pos_ms, self._clock()))
            if not ok:
                break
        estimate = _median_fps([p[2] / 1000.0 for p in self._pending if p[0] and math.isfinite(p[2])])
        if estimate is None and self.spec.live:
            estimate = _median_fps([p[3] for p in self._pending if p[0]])
        if estimate is None:
            raise SourceError(
                f"{self.name} has no frame rate (the container says {stored:g} and the first "
                f"{len(self._pending)} frame(s) carry no increasing timestamps); pass --fps"
            )
        self.fps, self.fps_source = estimate, "timestamps"
        self._record(
            self.events,
            {
                "t": 0.0,
                "event": "fps",
                "fps": round(estimate, 3),
                "source": "timestamps",
                "container_fps": stored,
                "frames": len(self._pending),
            },
        )

    def frames(self) -> Iterator[Frame | None]:
        """The source's frames in order; opens the source, and a live source's reader thread starts now.

        Returns:
            An iterator of ``Frame``s that ends when the file ends, the stream is lost or ``close()`` is called;
            SourceError when it does not open (see ``open``), is closed or ``frames()`` was called before. With
            ``poll_s`` set, a live source yields None when no frame came within ``poll_s`` seconds (a caller
            serving several cameras is never held up by one in back-off).
        """
        self.open()
        if self._started:
            raise SourceError(f"{self.name} is already being read; one reader per source")
        self._started = True
        if not self.spec.live:
            return self._file_frames()
        self._thread = threading.Thread(target=self._read_live, name=f"source {self.name}", daemon=True)
        self._thread.start()
        return self._live_frames()

    def _read_raw(self):
        try:
            ok, raw = self._cap.read()
        except cv2.error:
            if not self.spec.live:
                raise
            ok, raw = False, None  # a live decoder error is a dropped stream: reconnect
        return bool(ok), raw, (float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) if ok else float("nan"))

    def _reads(self):
        """(ok, raw, pos_ms, arrival) of the frames read on opening, then of the current capture until stopped."""
        while self._pending:
            yield self._pending.popleft()
        while not self._stop.is_set():
            yield *self._read_raw(), self._clock()

    def _file_frames(self) -> Iterator[Frame]:
        bad_in_row = 0
        try:
            for ok, raw, pos_ms, _ in self._reads():
                if not ok:
                    self.status, self.message = "ended", f"{self.name} ended after {self.stats['frames']} frames"
                    return
                self._read_count += 1
                image = self._usable(raw)
                bad_in_row = bad_in_row + 1 if image is None else 0
                if bad_in_row >= MAX_BAD_IN_ROW:
                    self.status, self.message = (
                        "error",
                        (
                            f"{self.name}: {MAX_BAD_IN_ROW} unusable frames in a row "
                            f"after frame {self.stats['frames']}; the file looks broken"
                        ),
                    )
                    return
                if image is not None:
                    t = self._file_t(pos_ms)
                    self._note_size(image, t)
                    yield self._emit(t, image, None)
        except cv2.error as exc:
            self.status, self.message = "error", f"{self.name}: decoding failed: {mask_credentials(exc)}"
        finally:
            self._release()

    def _file_t(self, pos_ms: float) -> float:
        """The container's timestamp while it increases; else the last one plus the reads since, at ``fps``."""
        stamp = pos_ms / 1000.0 if math.isfinite(pos_ms) and pos_ms >= 0 else None
        if stamp is None or stamp == self._prev_raw:
            base = self._prev_t if self._prev_t is not None else -1.0 / self.fps
            t = base + (self._read_count - self._stamp_reads) / self.fps
        else:
            t, self._prev_raw = stamp, stamp
        self._prev_t, self._stamp_reads = t, self._read_count
        return t

    def _usable(self, raw) -> np.ndarray | None:
        """``raw`` as RGB like training decoded it, or None (counted) when unusable."""
        ok = isinstance(raw, np.ndarray) and raw.size > 0 and raw.ndim in (2, 3) and raw.dtype in (np.uint8, np.uint16)
        channels = (1 if raw.ndim == 2 else raw.shape[2]) if ok else 0
        if channels not in (1, 3, 4):
            self.stats["bad_frames"] += 1
            return None
        self.stats["converted"] += int(raw.dtype == np.uint16 or channels != 3)
        raw = (raw >> 8).astype(np.uint8) if raw.dtype == np.uint16 else raw
        raw = raw.reshape(raw.shape[:2]) if channels == 1 else raw
        raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2BGR) if channels == 4 else raw
        return to_rgb(np.ascontiguousarray(raw), None)

    def _note_size(self, image: np.ndarray, t: float) -> None:
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._size is not None and size != self._size:
            self._record(
                self.events, {"t": round(t, 3), "event": "resolution", "from": list(self._size), "to": list(size)}
            )
        self._size = size

    def _emit(self, t: float, image: np.ndarray, reason: str | None) -> Frame:
        """The delivered frame: index, segment and gap bookkeeping (consumer side, both kinds)."""
        if self._last_t is not None:
            if reason is None and t < self._last_t - 1e-6:
                reason = "timestamps went backwards"
            elif reason is None and t - self._last_t > self.max_gap_s:
                lost = self.stats["dropped"] - self._dropped_at_last
                reason = f"timestamp jump of {t - self._last_t:.1f} s" + (
                    f" ({lost} frame{'s' * (lost != 1)} dropped while the detector lagged)" if lost else ""
                )
            if reason is not None:
                self._segment += 1
                self._record(self.gaps, Gap(round(self._last_t, 3), round(t, 3), reason))
        self._dropped_at_last, self._last_t = self.stats["dropped"], t
        self.stats["frames"] += 1
        return Frame(self.stats["frames"] - 1, float(t), image, self._segment)

    def _now(self) -> float:
        return round(self._clock() - self._t0, 3) if self._opened else 0.0

    def _read_live(self) -> None:
        reason, last_good = None, self._clock()  # reason: the gap to report with the next usable frame
        try:
            for ok, raw, _, arrival in self._reads():  # reads whichever capture is current
                image = self._usable(raw) if ok else None
                if image is not None:
                    t, last_good = arrival - self._t0, arrival
                    self._note_size(image, t)
                    self._put((t, image, reason))
                    reason = None
                elif not ok or arrival - last_good > self.stall_s:
                    cause = "dropped" if not ok else f"stalled (no usable frame for {self.stall_s:g} s)"
                    attempts = self._reconnect(cause)
                    if attempts is None:
                        return
                    reason = f"stream {cause}; reconnected after {attempts} attempt{'s' * (attempts != 1)}"
                    last_good = self._clock()
        except Exception as exc:  # noqa: BLE001 - the consumer learns it from status, never from a dead thread
            self.status, self.message = "error", f"{self.name}: reading failed: {mask_credentials(exc)}"
        finally:
            self._release()
            with self._cond:
                self._reader_done = True
                self._cond.notify_all()

    def _reconnect(self, cause: str) -> int | None:
        """Re-open with back-off; the attempts it took, or None (status set unless closed) when it gave up."""
        self._release()
        for k in range(self.reconnect_attempts):
            (self._stop.wait if self._sleep is time.sleep else self._sleep)(0.5 * 2**k)  # close() cuts it short
            if self._stop.is_set():
                return None
            self._cap = self._try_open()
            if self._cap is not None:
                self.stats["reconnects"] += 1
                self._record(self.events, {"t": self._now(), "event": "reconnect", "attempts": k + 1, "cause": cause})
                return k + 1
        if not self._stop.is_set():
            self.status, self.message = (
                "dropped",
                (
                    f"{self.name}: stream {cause} and did not come back after {self.reconnect_attempts} reconnect "
                    f"attempt(s) over {0.5 * (2**self.reconnect_attempts - 1):g} s; check the camera, network and URL"
                ),
            )
            self._record(self.events, {"t": self._now(), "event": "dropped", "cause": cause})
        return None

    def _put(self, item: tuple) -> None:
        with self._cond:
            self._queue.append(item)
            if len(self._queue) > self.queue_frames:  # the consumer lags: drop the oldest frame
                oldest = self._queue.popleft()
                self.stats["dropped"] += 1
                if oldest[2] is not None:  # a reconnect's gap still separates what follows
                    t, image, reason = self._queue[0]
                    self._queue[0] = (t, image, reason or oldest[2])
            self._cond.notify_all()

    def _live_frames(self) -> Iterator[Frame | None]:
        try:
            while True:
                with self._cond:
                    deadline = None if self.poll_s is None else time.monotonic() + self.poll_s
                    while not self._queue and not self._reader_done and not self._stop.is_set():
                        if deadline is not None and time.monotonic() >= deadline:
                            break
                        self._cond.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
                    if not self._queue:
                        if self._reader_done or self._stop.is_set():
                            return
                        item = None  # nothing yet (poll_s passed): the caller serves its other sources
                    else:
                        item = self._queue.popleft()
                yield None if item is None else self._emit(*item)
        finally:
            self.close()

    def _record(self, into: list, item) -> None:
        if len(into) < MAX_RECORDS:
            into.append(item)
        else:
            self.stats["unrecorded"] += 1

    def _release(self) -> None:
        self._pending.clear()
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def close(self) -> None:
        """Stop the reader thread and release the capture; safe to call again."""
        self._closed = True
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
        if thread is None or not thread.is_alive():
            self._release()  # a reader still blocked in read() releases it itself when the read returns
        self._queue.clear()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _median_fps(stamps: list[float]) -> float | None:
    """Frame rate from the median positive interval of ``stamps`` (at least two intervals), or None."""
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b > a]  # pairwise
    fps = 1.0 / statistics.median(steps) if len(steps) >= 2 else 0.0
    return fps if 0 < fps <= MAX_FPS else None
