"""Video probing and frame sampling with OpenCV.

Two jobs, both with bounded memory (a clip is never loaded whole):

* ``probe_video`` tells whether a file is a usable clip and what it holds
  (codec, verified frame count, fps, duration, resolution, size). It never
  raises for a bad file: the audit lists bad files with a readable reason.
* ``read_frames`` decodes the frames at given indices (optionally each with the
  frame right after it, for motion features) in one sequential pass.

Frame-accurate seeking is slow and inexact in many containers, so reading is
sequential (``grab`` every frame, ``retrieve`` only the needed ones) and stops
after the last needed frame.
"""
from __future__ import annotations

import math
import os
import warnings

import cv2
import numpy as np

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".mpg", ".mpeg", ".wmv", ".webm", ".m4v", ".flv")

# A clip needs at least two frames: one frame has no motion and no "next" frame.
MIN_FRAMES = 2
# Frame counts above this in a header are treated as garbage (about 46 h at 60 fps).
MAX_PLAUSIBLE_FRAMES = 10_000_000
# Frames grabbed at the end of a clip to check the header's frame count.
VERIFY_TAIL_FRAMES = 4


class VideoReadError(ValueError):
    """A video file could not be decoded at all."""


class ShortVideoWarning(UserWarning):
    """A video decodes fewer frames than its header claims; indices were re-mapped."""


def _fourcc_text(value: float) -> str:
    code = int(value) if value and math.isfinite(value) else 0
    if code <= 0:
        return ""
    text = code.to_bytes(4, "little").decode("latin-1")
    # Some backends report a numeric codec id instead of four printable letters.
    return text.strip("\x00 ") if text.isprintable() else str(code)


def _count_by_grabbing(cap: cv2.VideoCapture) -> int:
    """Count the frames left in ``cap`` by grabbing them (decodes, keeps nothing)."""
    count = 0
    while cap.grab():
        count += 1
    return count


def _verified_frame_count(path: str, header: int) -> int:
    """Count decodable frames, trusting a plausible header only if its tail decodes.

    Args:
        path: video file.
        header: the container's frame count (may be 0, negative or wrong).
    Returns:
        The number of frames that decode.
    """
    if 2 * VERIFY_TAIL_FRAMES < header <= MAX_PLAUSIBLE_FRAMES:
        cap = cv2.VideoCapture(path)
        try:
            start = header - VERIFY_TAIL_FRAMES
            # The header is right only if exactly the last few frames decode after
            # a seek; a truncated file, an inexact seek or a wrong header all break
            # this and fall through to an exact sequential count.
            if cap.isOpened() and cap.set(cv2.CAP_PROP_POS_FRAMES, start):
                if _count_by_grabbing(cap) == VERIFY_TAIL_FRAMES:
                    return header
        finally:
            cap.release()
    cap = cv2.VideoCapture(path)
    try:
        return _count_by_grabbing(cap) if cap.isOpened() else 0
    finally:
        cap.release()


def probe_video(path: str | os.PathLike) -> dict:
    """Describe a video file and decide whether it is usable.

    Args:
        path: video file.
    Returns:
        A dict with opened (bool), codec (fourcc text), frames_header (count in
        the container), frames (verified decodable count), fps, duration_s,
        width, height, bytes, status ("ok" or "unusable") and reason (empty
        when ok, else a readable sentence). Never raises for a bad file.
    """
    path = str(path)
    info = {"opened": False, "codec": "", "frames_header": 0, "frames": 0, "fps": float("nan"),
            "duration_s": float("nan"), "width": 0, "height": 0, "bytes": 0,
            "status": "unusable", "reason": ""}
    if not os.path.isfile(path):
        info["reason"] = "file does not exist" if not os.path.exists(path) else "not a regular file"
        return info
    info["bytes"] = os.path.getsize(path)
    if info["bytes"] == 0:
        info["reason"] = "file is empty (0 bytes)"
        return info
    try:
        cap = cv2.VideoCapture(path)
        try:
            info["opened"] = bool(cap.isOpened())
            if not info["opened"]:
                info["reason"] = "cannot be decoded as video (no readable video stream; corrupt or not a video)"
                return info
            info["codec"] = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
            header = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            info["frames_header"] = int(header) if math.isfinite(header) and header > 0 else 0
            fps = cap.get(cv2.CAP_PROP_FPS)
            # 0, NaN and absurd rates come from broken or variable-rate headers.
            info["fps"] = float(fps) if math.isfinite(fps) and 0 < fps <= 1000 else float("nan")
            ok, frame = cap.read()
        finally:
            cap.release()
        if not ok or frame is None:
            info["reason"] = "cannot be decoded as video (the container opens but no frame decodes)"
            return info
        info["height"], info["width"] = int(frame.shape[0]), int(frame.shape[1])
        info["frames"] = _verified_frame_count(path, info["frames_header"])
    except cv2.error as err:  # a decoder failure must not stop an audit of thousands of files
        info["reason"] = f"OpenCV error while decoding: {str(err).strip().splitlines()[-1]}"
        return info
    if info["frames"] < MIN_FRAMES:
        info["reason"] = (f"only {info['frames']} decodable frame{'s' if info['frames'] != 1 else ''} "
                          f"(need at least {MIN_FRAMES})")
        return info
    if math.isfinite(info["fps"]):
        info["duration_s"] = info["frames"] / info["fps"]
    info["status"] = "ok"
    return info


def sample_frame_indices(n_frames: int, t: int) -> np.ndarray:
    """Indices of ``t`` frames evenly spread over ``[0, n_frames - 1]``.

    Args:
        n_frames: frames in the clip (>= 1).
        t: frames to sample (>= 1); when ``t > n_frames`` indices repeat.
    Returns:
        int64 array of shape (t,), non-decreasing, first 0 and last n_frames - 1
        (for t >= 2).
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"sample_frame_indices: n_frames must be a positive integer, got {n_frames!r}; "
                         "probe the clip first and skip clips with no frames")
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"sample_frame_indices: t (frames per clip) must be a positive integer, got {t!r}")
    return np.rint(np.linspace(0, int(n_frames) - 1, int(t))).astype(np.int64)


def _target_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ValueError(f"read_frames: size must be None, a positive int (square) or (width, height), got {size!r}")
    return int(size[0]), int(size[1])


def _to_rgb(frame_bgr: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if frame_bgr.ndim == 2:  # some codecs hand back grey frames
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    if size is not None and (frame_bgr.shape[1], frame_bgr.shape[0]) != size:
        frame_bgr = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def _decode_needed(path: str, needed: set[int], size) -> tuple[dict[int, np.ndarray], int]:
    """One sequential pass that keeps only the ``needed`` frames.

    Returns:
        (frames by index, frames decoded; the true frame count when it stopped short of
        the last needed index).
    """
    last = max(needed)
    frames: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoReadError(f"cannot read video {path!r}: it does not open as a video "
                                 "(missing, empty, corrupt or not a video); run the audit to list such files")
        index = 0
        while index <= last:
            if not cap.grab():
                return frames, index
            if index in needed:
                ok, frame = cap.retrieve()
                if not ok or frame is None:  # decodes to nothing: treat as the end
                    return frames, index
                frames[index] = _to_rgb(frame, size)
            index += 1
        return frames, index
    finally:
        cap.release()


def read_frames(path: str | os.PathLike, indices, size=None, with_next: bool = False) -> np.ndarray:
    """Decode the frames at ``indices`` in one sequential pass.

    If the file decodes fewer frames than the indices assume (a truncated clip
    whose header over-counts), indices are re-mapped proportionally onto the
    frames that do decode and a ``ShortVideoWarning`` says so.

    Args:
        path: video file.
        indices: frame indices (any order, repeats allowed), e.g. from
            ``sample_frame_indices``.
        size: None (native size), an int (square) or (width, height); frames are
            resized with INTER_AREA.
        with_next: also return the frame right after each index (the same frame
            again when it is the last one), for frame-difference/flow features.
    Returns:
        uint8 RGB array (T, H, W, 3), or (T, 2, H, W, 3) when ``with_next``.
    Raises:
        VideoReadError: nothing decodes.
        ValueError: bad indices or size.
    """
    path = str(path)
    size = _target_size(size)
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or (idx < 0).any():
        raise ValueError(f"read_frames({path!r}): indices must be a non-empty 1-D sequence of integers >= 0, "
                         f"got {indices!r}")
    idx = idx.astype(np.int64)

    def needed_for(ix: np.ndarray) -> set[int]:
        wanted = set(ix.tolist())
        return wanted | {i + 1 for i in wanted} if with_next else wanted

    frames, decoded = _decode_needed(path, needed_for(idx), size)
    if decoded == 0:
        raise VideoReadError(f"cannot read video {path!r}: no frame decodes (corrupt or unsupported codec); "
                             "run the audit to list such files")
    if int(idx.max()) >= decoded:
        # The first pass reached the end, so ``decoded`` is the true count. Spread
        # the request over it the same way it was spread over the assumed count.
        assumed = int(idx.max()) + 1
        remapped = np.rint(idx * ((decoded - 1) / max(assumed - 1, 1))).astype(np.int64)
        warnings.warn(ShortVideoWarning(
            f"{path}: only {decoded} frames decode but indices up to {assumed - 1} were asked for; "
            f"indices re-mapped onto frames 0..{decoded - 1}"), stacklevel=2)
        idx = remapped
        missing = needed_for(idx) - frames.keys()
        missing = {i for i in missing if i < decoded}
        if missing:
            more, _ = _decode_needed(path, missing, size)
            frames.update(more)
        if not set(idx.tolist()) <= frames.keys():
            raise VideoReadError(f"cannot read video {path!r}: frames stopped decoding on a second pass")
    shape = frames[int(idx[0])].shape
    if size is None and any(f.shape != shape for f in frames.values()):
        # Resolution changes inside a clip are rare; unify to the first frame's size.
        frames = {k: cv2.resize(f, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) if f.shape != shape else f
                  for k, f in frames.items()}
    if not with_next:
        return np.stack([frames[int(i)] for i in idx])
    pairs = []
    for i in idx.tolist():
        # Only decoded frames are in ``frames``: no successor means i is the last frame.
        pairs.append(np.stack([frames[i], frames.get(i + 1, frames[i])]))
    return np.stack(pairs)

