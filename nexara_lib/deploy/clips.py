"""Short video clips of the field loop: alert evidence a browser plays, and training clips cut from footage.

``write_clip`` writes RGB frames atomically in the container its suffix names: ``.webm`` (VP8: Chrome,
Firefox, Edge and Safari play it, so JupyterLab shows alert clips in a ``<video>``; ten to twenty times slower to
encode), ``.mp4`` (MPEG-4 part 2, as the test videos: fast and small, browsers do not play it) or ``.avi`` (Motion
JPEG). This OpenCV build writes no H.264. ``browser_preview`` makes the ``.webm`` of a clip when someone watches it.
``read_clip`` reads every frame back; ``cut_clip`` reads a time span of any video forward,
one frame in memory at a time. ``frames_digest`` is the SHA-1 of a clip's pixels: the same content gives the
same digest whatever the encoder did, which is how the feedback import finds clips it already has.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from nexara_lib.deploy.head import quiet_stderr
from nexara_lib.io import atomic_path

FOURCC_BY_SUFFIX = {".webm": "VP80", ".mp4": "mp4v", ".avi": "MJPG"}


def write_clip(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB frames (all of one size) as a video, atomically.

    Args:
        path: ``.webm`` (VP8), ``.mp4`` (mp4v) or ``.avi`` (MJPG).
        frames: (H, W, 3) uint8 RGB frames; frames of another size than the first are skipped.
        fps: the frame rate written.
    Returns:
        The number of frames written.
    Raises:
        ValueError: another suffix, no frame, a bad fps, or a writer OpenCV cannot open.
    """
    path = Path(path)
    fourcc = FOURCC_BY_SUFFIX.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(
            f"clip {path.name}: write one of {sorted(FOURCC_BY_SUFFIX)}, not {path.suffix or 'no suffix'!r}"
        )
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"clip {path.name}: the frame rate must be > 0, got {fps!r}")
    written, writer, size = 0, None, None
    with atomic_path(path, keep_suffix=True) as tmp:
        try:
            for frame in frames:
                if writer is None:
                    size = (int(frame.shape[1]), int(frame.shape[0]))
                    with quiet_stderr():  # FFmpeg's note about the WebM codec tag: nothing to act on
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*fourcc), float(fps), size)
                    if not writer.isOpened():
                        raise ValueError(f"OpenCV cannot write {path.suffix} video of {size[0]}x{size[1]} to {path}")
                if (int(frame.shape[1]), int(frame.shape[0])) != size:
                    continue
                writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
                written += 1
        finally:
            if writer is not None:
                writer.release()
        if not written:
            raise ValueError(f"clip {path.name}: no frame to write")
    return written


def video_frames(path: str | os.PathLike) -> Iterator[tuple[float, np.ndarray]]:
    """(time in s, RGB frame) of every frame of a video, timed by its frame rate, read forward."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"cannot open video {path}: missing, empty or not a video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"video {path} has no frame rate")
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield index / fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


def video_fps(path: str | os.PathLike) -> float:
    """The frame rate a video's container states (0.0 when it states none)."""
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if math.isfinite(fps) else 0.0


def read_clip(path: str | os.PathLike) -> tuple[list[np.ndarray], float]:
    """Every frame of a (short) clip as RGB, and its frame rate."""
    return [frame for _, frame in video_frames(path)], video_fps(path)


def cut_clip(
    path: str | os.PathLike, start_s: float, end_s: float, crop: tuple[int, int, int, int] | None = None
) -> list[np.ndarray]:
    """The RGB frames of ``path`` timed in [start_s, end_s), optionally cropped to (y0, y1, x0, x1)."""
    out = []
    for t, frame in video_frames(path):
        if t >= end_s:
            break
        if t >= start_s - 1e-9:
            out.append(frame[crop[0] : crop[1], crop[2] : crop[3]].copy() if crop else frame)
    return out


def browser_preview(clip: str | os.PathLike, preview: str | os.PathLike) -> Path:
    """``preview`` (a ``.webm`` browsers play) of ``clip``, written once (atomically) and reused while newer."""
    clip, preview = Path(clip), Path(preview)
    if preview.is_file() and preview.stat().st_mtime_ns >= clip.stat().st_mtime_ns:
        return preview
    frames, fps = read_clip(clip)
    write_clip(preview, frames, fps or 10.0)
    return preview


def frames_digest(frames: Iterable[np.ndarray]) -> str:
    """SHA-1 of the frames' shapes and pixels: equal for equal content, whatever encoder wrote it."""
    digest = hashlib.sha1()
    for frame in frames:
        digest.update(repr(frame.shape).encode())
        digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()
