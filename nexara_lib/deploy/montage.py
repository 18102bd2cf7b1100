"""Test videos for the detector, assembled from labelled clips: a long video whose violent
segments are known (``assemble_long_video``) and a grid mosaic of several videos, as a
multi-camera monitor wall would show them (``assemble_grid_video``).

Clips are resampled by time, not by frame: each output frame at time t shows the source frame
nearest t (ties to the earlier one), so a clip keeps its duration whatever its frame rate.
Frames are resized with INTER_AREA; videos are written atomically with OpenCV (mp4v for .mp4,
MJPG for .avi). Clips are read sequentially, one frame held at a time per input.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from nexara_lib.io import atomic_path
from nexara_lib.labels import CLASS_NAMES
from nexara_lib.video.probe import probe_video

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".avi": "MJPG"}
# Slack (in frames) for float error when mapping times to frame indices.
FRAME_EPS = 1e-6


def _check_size(size, what: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (width, height) in pixels, got {size!r}") from None
    if w <= 0 or h <= 0 or (w, h) != tuple(size):
        raise ValueError(f"{what} must be two positive whole numbers (width, height), got {size!r}")
    return w, h


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame as 3-channel BGR of ``size`` (w, h), resized with INTER_AREA."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if (frame.shape[1], frame.shape[0]) != size:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return frame


def nearest_index(t: float, fps: float, frames: int) -> int:
    """The index of the frame nearest time ``t`` (s) in a clip of ``frames`` frames at ``fps``;
    a tie goes to the earlier frame (the one on screen), times past the end to the last frame."""
    return min(frames - 1, max(0, math.ceil(t * fps - 0.5 - FRAME_EPS)))


class _Clip:
    """One input video read forward: probed on creation (an unusable one is a ValueError naming it)."""

    def __init__(self, path: str | os.PathLike, what: str = "clip"):
        self.path = Path(path)
        info = probe_video(self.path)
        if info["status"] != "ok":
            raise ValueError(f"{what} {self.path.name} cannot be used: {info['reason']} ({self.path})")
        if not (math.isfinite(info["fps"]) and info["fps"] > 0):
            raise ValueError(f"{what} {self.path.name} has no usable frame rate ({self.path})")
        self.what, self.fps, self.frames = what, float(info["fps"]), int(info["frames"])
        self.size = (int(info["width"]), int(info["height"]))
        self.duration = self.frames / self.fps
        self._cap: cv2.VideoCapture | None = None
        self._index = -1
        self._frame: np.ndarray | None = None

    def frame(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Frame ``index`` (not before the last one asked for) as BGR of ``size``."""
        if index < self._index:
            raise ValueError(
                f"{self.path.name}: frame {index} asked after frame {self._index} (reading is forward only)"
            )
        if index == self._index and self._frame is not None:
            return self._frame
        if self._cap is None:
            self._cap = cv2.VideoCapture(str(self.path))
        while self._index < index - 1:
            if not self._cap.grab():
                raise ValueError(
                    f"{self.what} {self.path.name}: frame {self._index + 1} of {self.frames} does not decode"
                )
            self._index += 1
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise ValueError(f"{self.what} {self.path.name}: frame {index} of {self.frames} does not decode")
        self._index, self._frame = index, _fit(frame, size)
        return self._frame

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _check_out(out_path) -> Path:
    out = Path(out_path)
    if out.suffix.lower() not in FOURCC_BY_SUFFIX:
        raise ValueError(f"output {out.name}: write .mp4 (mp4v) or .avi (MJPG), not {out.suffix or 'no suffix'!r}")
    return out


@contextlib.contextmanager
def _video_writer(out: Path, fps: float, size: tuple[int, int]) -> Iterator[cv2.VideoWriter]:
    """An OpenCV writer on a temporary file that replaces ``out`` when the block succeeds."""
    fourcc = cv2.VideoWriter.fourcc(*FOURCC_BY_SUFFIX[out.suffix.lower()])
    with atomic_path(out, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), fourcc, float(fps), size)
        try:
            if not writer.isOpened():
                raise ValueError(
                    f"OpenCV cannot write {out.suffix} video of {size[0]}x{size[1]} at {fps:g} fps to {out}"
                )
            yield writer
        finally:
            writer.release()


def _label(label, path) -> int:
    if isinstance(label, (bool, int, np.integer)) and int(label) in (0, 1):
        return int(label)
    raise ValueError(
        f"clip {Path(path).name}: label must be 0 ({CLASS_NAMES[0]}) or 1 ({CLASS_NAMES[1]}), got {label!r}"
    )


def assemble_long_video(
    clips: Sequence[tuple[str, int]],
    out_path: str | os.PathLike,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
) -> list[dict]:
    """Concatenate labelled clips into one video whose truth segments are known.

    Clip c occupies output frames [round(T_c * fps), round(T_(c+1) * fps)), T_c being the summed
    durations (frames / fps) of the clips before it, so each keeps its duration to within a frame.

    Args:
        clips: [(path, label 0/1)], in playing order.
        out_path: .mp4 (mp4v) or .avi (MJPG); written atomically.
        fps: output frame rate (default: the first clip's).
        size: output (width, height) (default: the first clip's).
    Returns:
        Truth segments, one per clip: {"start_t", "end_t" (s, at output frame boundaries), "label",
        "class_name", "clip" (file name), "first_frame", "last_frame" (output frames),
        "source_fps", "source_frames"}.
    Raises:
        ValueError: no clips, a bad label, an unreadable clip (named), a clip shorter than one
            output frame, or a bad fps/size/suffix.
    """
    out = _check_out(out_path)
    if not clips:
        raise ValueError("assemble_long_video needs at least one (path, label) clip")
    labels = [_label(label, path) for path, label in clips]
    sources = [_Clip(path) for path, _ in clips]
    fps = float(sources[0].fps if fps is None else fps)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"assemble_long_video: fps must be > 0, got {fps!r}")
    size = _check_size(sources[0].size if size is None else size, "size")
    bounds, elapsed = [0], 0.0
    for clip in sources:
        elapsed += clip.duration
        bounds.append(math.floor(elapsed * fps + 0.5))
        if bounds[-1] == bounds[-2]:
            raise ValueError(f"clip {clip.path.name} ({clip.duration:.3f} s) is shorter than one frame at {fps:g} fps")
    segments = []
    try:
        with _video_writer(out, fps, size) as writer:
            for c, clip in enumerate(sources):
                for j in range(bounds[c], bounds[c + 1]):
                    writer.write(clip.frame(nearest_index((j - bounds[c]) / fps, clip.fps, clip.frames), size))
                clip.release()
                segments.append(
                    {
                        "start_t": bounds[c] / fps,
                        "end_t": bounds[c + 1] / fps,
                        "label": labels[c],
                        "class_name": CLASS_NAMES[labels[c]],
                        "clip": clip.path.name,
                        "first_frame": bounds[c],
                        "last_frame": bounds[c + 1] - 1,
                        "source_fps": clip.fps,
                        "source_frames": clip.frames,
                    }
                )
    finally:
        for clip in sources:
            clip.release()
    return segments


def assemble_grid_video(
    videos: Sequence[str | os.PathLike], rows: int, cols: int, out_path: str | os.PathLike, cell_size: tuple[int, int]
) -> None:
    """A rows x cols mosaic of videos, row-major (video i in row i // cols, column i % cols).

    The output runs at the first video's frame rate for as long as the longest video; each output
    frame shows every input's frame nearest its time, black after an input's end and in unused cells.

    Args:
        videos: 1 to rows * cols video paths.
        rows, cols: grid shape.
        out_path: .mp4 (mp4v) or .avi (MJPG); written atomically.
        cell_size: (width, height) of one cell; the output is (cols * width, rows * height).
    Raises:
        ValueError: a bad grid shape, too many or no videos, an unreadable video (named), a bad size/suffix.
    """
    out = _check_out(out_path)
    if int(rows) != rows or int(cols) != cols or rows < 1 or cols < 1:
        raise ValueError(f"assemble_grid_video: rows and cols must be whole numbers >= 1, got {rows!r}, {cols!r}")
    if not 1 <= len(videos) <= rows * cols:
        raise ValueError(
            f"assemble_grid_video: a {rows}x{cols} grid takes 1 to {rows * cols} videos, got {len(videos)}"
        )
    w, h = _check_size(cell_size, "cell_size")
    inputs = [_Clip(path, "video") for path in videos]
    fps = inputs[0].fps
    n_out = max(math.ceil(v.duration * fps - FRAME_EPS) for v in inputs)
    try:
        with _video_writer(out, fps, (cols * w, rows * h)) as writer:
            for j in range(n_out):
                t = j / fps
                canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
                for k, video in enumerate(inputs):
                    if t * video.fps < video.frames - FRAME_EPS:  # before the input's end
                        r, c = divmod(k, cols)
                        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = video.frame(
                            nearest_index(t, video.fps, video.frames), (w, h)
                        )
                    else:
                        video.release()
                writer.write(canvas)
    finally:
        for video in inputs:
            video.release()
