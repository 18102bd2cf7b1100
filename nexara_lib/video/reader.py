"""Exact frame reading at given indices: sequential grabs, or seeks where this clip's own timings say they win.

A seek (``CAP_PROP_POS_FRAMES``) decodes from the keyframe before the target, so
it costs about one GOP of decoding; grabbing forward costs one decode per
skipped frame. Which is cheaper depends on the codec, the GOP and the gap, so
each clip measures both: grabs are timed as they happen, a seek is tried once
when the gap ahead would take longer than ``SEEK_TRIAL_MS`` to grab, and later
gaps seek only while the measured seek cost stays below the measured cost of
grabbing through them. Short clips (2-10 s) never seek; long ones (minutes) do.

Seeks are not frame-exact in every container (B-frames, variable frame rates,
broken indexes), so each one is verified: the frame landed on must carry the
timestamp a constant-rate clip gives the target. A failed check re-opens the
clip and grabs forward, and seeking is off for the rest of that clip. The
frames returned therefore always equal those of a full sequential decode.

Memory holds only the requested frames, resized as they are decoded.
"""

from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np

# Grabbing through a gap that would take longer than this (ms, at the measured
# grab rate) is worth one trial seek.
SEEK_TRIAL_MS = 40.0
# Gaps shorter than this are always grabbed (a seek decodes at least a GOP).
MIN_SEEK_GAP = 8
# A landed frame's timestamp may differ from the target's by this share of a frame interval.
TIMESTAMP_TOLERANCE = 0.5

# FFmpeg decoding threads per opened clip (0 = OpenCV's default, one per core). Decoder
# processes set 1: with one process per core, one thread each wastes least CPU (~20 % less).
_DECODER_THREADS = {"n": 0}


def set_decoder_threads(n: int) -> None:
    """FFmpeg threads each clip opened in this process decodes with (0 = OpenCV's default)."""
    _DECODER_THREADS["n"] = max(0, int(n))


class VideoReadError(ValueError):
    """A video file could not be decoded at all."""


@dataclasses.dataclass
class ReadStats:
    """How a clip was read: what ``read_frames_at`` did, for the extraction records."""

    grabs: int = 0  # frames decoded by grabbing forward
    seeks: int = 0  # verified seeks used
    seek_fallbacks: int = 0  # seeks that landed on the wrong frame (then grabbed instead)
    grab_ms: float = float("nan")  # measured mean cost of one grab
    seek_ms: float = float("nan")  # measured mean cost of one seek (with its grab)
    decoded: int = 0  # frames the clip yielded before stopping (its true length if it ended early)
    ended_early: bool = False  # the clip ended before the last requested frame

    @property
    def strategy(self) -> str:
        return "seek" if self.seeks else "sequential"

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["strategy"] = self.strategy
        return {k: (round(v, 3) if isinstance(v, float) and math.isfinite(v) else v) for k, v in out.items()}


def target_size(size) -> tuple[int, int] | None:
    """``size`` as (width, height): None, a positive int (square) or a (width, height) pair."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"read_frames: size must be None, a positive int (square) or (width, height), got {size!r}")
    return int(size[0]), int(size[1])


def to_rgb(frame_bgr: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A decoded BGR (or grey) frame as RGB, resized with INTER_AREA when ``size`` differs."""
    if frame_bgr.ndim == 2:  # some codecs hand back grey frames
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    if size is not None and (frame_bgr.shape[1], frame_bgr.shape[0]) != size:
        frame_bgr = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


class _Capture:
    """An open clip with its read position, timing its grabs and seeks."""

    def __init__(self, path: str, stats: ReadStats, allow_seek: bool):
        self.path, self.stats, self.allow_seek = path, stats, allow_seek
        self.cap = self._open()
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.frame_ms = 1000.0 / fps if math.isfinite(fps) and 0 < fps <= 1000 else float("nan")
        self.position = 0  # index of the frame the next grab yields
        self.first_ms = float("nan")  # timestamp of frame 0
        self.grab_s = 0.0
        self.timed_grabs = 0
        self.seek_s = 0.0

    def _open(self) -> cv2.VideoCapture:
        threads = _DECODER_THREADS["n"]
        cap = (
            cv2.VideoCapture(self.path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads])
            if threads
            else cv2.VideoCapture(self.path)
        )
        if not cap.isOpened():
            raise VideoReadError(
                f"cannot read video {self.path!r}: it does not open as a video "
                "(missing, empty, corrupt or not a video); run the audit to list such files"
            )
        return cap

    def release(self) -> None:
        self.cap.release()

    def grab(self) -> bool:
        t0 = time.perf_counter()
        ok = self.cap.grab()
        elapsed = time.perf_counter() - t0
        if not ok:
            return False
        self.stats.grabs += 1
        if self.position == 0:  # the first grab also starts the decoder: not a fair price of a grab
            self.first_ms = float(self.cap.get(cv2.CAP_PROP_POS_MSEC))
        else:
            self.grab_s += elapsed
            self.timed_grabs += 1
            self.stats.grab_ms = 1000 * self.grab_s / self.timed_grabs
        self.position += 1
        return True

    def _seek_pays(self, gap: int) -> bool:
        if not self.allow_seek or gap < MIN_SEEK_GAP or not math.isfinite(self.frame_ms) or self.timed_grabs < 2:
            return False
        grab_cost = gap * self.stats.grab_ms
        if not self.stats.seeks:  # nothing measured yet: one trial when grabbing would be slow
            return grab_cost > SEEK_TRIAL_MS
        return self.stats.seek_ms < grab_cost

    def _expected_ms(self, index: int) -> float:
        return self.first_ms + index * self.frame_ms

    def seek_and_grab(self, target: int) -> bool:
        """Seek so that the current frame is ``target``; False (capture re-opened at frame 0) if not exact."""
        t0 = time.perf_counter()
        ok = self.cap.set(cv2.CAP_PROP_POS_FRAMES, target) and self.cap.grab()
        landed_ms = float(self.cap.get(cv2.CAP_PROP_POS_MSEC)) if ok else float("nan")
        elapsed = time.perf_counter() - t0
        exact = ok and abs(landed_ms - self._expected_ms(target)) <= TIMESTAMP_TOLERANCE * self.frame_ms
        if exact:
            self.seek_s += elapsed
            self.stats.seeks += 1
            self.stats.seek_ms = 1000 * self.seek_s / self.stats.seeks
            self.position = target + 1
            return True
        # Landed elsewhere (or past the end): start over sequentially and stop seeking in this clip.
        self.stats.seek_fallbacks += 1
        self.allow_seek = False
        self.cap.release()
        self.cap = self._open()
        self.position = 0
        return False

    def advance_to(self, target: int) -> bool:
        """Make ``target`` the current (last grabbed) frame; False when the clip ends first."""
        gap = target - self.position
        if self._seek_pays(gap) and self.seek_and_grab(target):
            return True
        while self.position <= target:
            if not self.grab():
                return False
        return True


def read_frames_at(
    path: str, needed: set[int], size=None, allow_seek: bool = True
) -> tuple[dict[int, np.ndarray], ReadStats]:
    """Decode the frames whose indices are in ``needed``, in one forward pass.

    Args:
        path: video file.
        needed: frame indices (>= 0).
        size: None (native size), an int (square) or (width, height).
        allow_seek: False forces a purely sequential read.
    Returns:
        (RGB uint8 frames by index, stats). When the clip ends before the last
        index, the frames reached are returned and ``stats.ended_early`` is set with
        ``stats.decoded`` the true number of frames.
    Raises:
        VideoReadError: the file does not open as a video.
    """
    size = target_size(size)
    stats = ReadStats()
    frames: dict[int, np.ndarray] = {}
    reader = _Capture(str(path), stats, allow_seek)
    try:
        for target in sorted(needed):
            if not reader.advance_to(target):
                stats.ended_early = True
                break
            ok, frame = reader.cap.retrieve()
            if not ok or frame is None:  # grabs but decodes to nothing: treat as the end
                reader.position -= 1
                stats.ended_early = True
                break
            frames[target] = to_rgb(frame, size)
        stats.decoded = reader.position
    finally:
        reader.release()
    return frames, stats
