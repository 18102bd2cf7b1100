"""Sampling frame indices over a clip and decoding exactly those frames (``read_frames``).

The frames at given indices (optionally each with the frame right after it, for
motion features) are decoded exactly, in one forward pass that grabs or seeks as
this clip's timings say (see ``video.reader``). Reading stops after the last
needed frame; a clip that decodes fewer frames than its indices assume has them
re-mapped onto the frames that do decode.
"""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np

from nexara_lib.video.reader import VideoReadError, read_frames_at, target_size


class ShortVideoWarning(UserWarning):
    """A video decodes fewer frames than its header claims; indices were re-mapped."""


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
        raise ValueError(
            f"sample_frame_indices: n_frames must be a positive integer, got {n_frames!r}; "
            "probe the clip first and skip clips with no frames"
        )
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"sample_frame_indices: t (frames per clip) must be a positive integer, got {t!r}")
    return np.rint(np.linspace(0, int(n_frames) - 1, int(t))).astype(np.int64)


def read_sampled_frames(
    path: str | os.PathLike, indices, size=None, with_next: bool = False, allow_seek: bool = True
) -> tuple[np.ndarray, dict]:
    """Decode the frames at ``indices`` exactly (see ``video.reader``) and say how.

    Same arguments and frames as ``read_frames``; no warning is raised, the record says it all.

    Returns:
        (frames, record): record has the read stats (strategy, grabs, seeks, seek_fallbacks,
        grab_ms, seek_ms), ``remapped`` (the clip decoded fewer frames than the indices assumed,
        so they were spread over ``frames_decoded`` frames instead) and ``frames_decoded``.
    """
    path = str(path)
    size = target_size(size)
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or (idx < 0).any():
        raise ValueError(
            f"read_frames({path!r}): indices must be a non-empty 1-D sequence of integers >= 0, got {indices!r}"
        )
    idx = idx.astype(np.int64)

    def needed_for(ix: np.ndarray) -> set[int]:
        wanted = set(ix.tolist())
        return wanted | {i + 1 for i in wanted} if with_next else wanted

    frames, stats = read_frames_at(path, needed_for(idx), size, allow_seek)
    record = {**stats.as_dict(), "remapped": False, "frames_decoded": None}
    if stats.ended_early and int(idx.max()) >= stats.decoded:  # not just the successor of the last frame
        decoded = stats.decoded
        if decoded == 0:
            raise VideoReadError(
                f"cannot read video {path!r}: no frame decodes (corrupt or unsupported codec); "
                "run the audit to list such files"
            )
        # The pass reached the end, so ``decoded`` is the true count. Spread the request
        # over it the same way it was spread over the assumed count.
        assumed = int(idx.max()) + 1
        idx = np.rint(idx * ((decoded - 1) / max(assumed - 1, 1))).astype(np.int64)
        record.update(remapped=True, frames_decoded=decoded)
        missing = {i for i in needed_for(idx) - frames.keys() if i < decoded}
        if missing:
            more, _ = read_frames_at(path, missing, size, allow_seek=False)
            frames.update(more)
        if not set(idx.tolist()) <= frames.keys():
            raise VideoReadError(f"cannot read video {path!r}: frames stopped decoding on a second pass")
    shape = frames[int(idx[0])].shape
    if size is None and any(f.shape != shape for f in frames.values()):
        # Resolution changes inside a clip are rare; unify to the first frame's size.
        frames = {
            k: cv2.resize(f, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) if f.shape != shape else f
            for k, f in frames.items()
        }
    if not with_next:
        return np.stack([frames[int(i)] for i in idx]), record
    # Only decoded frames are in ``frames``: no successor means i is the last frame. Pairs are filled in place
    # and each frame dropped after its last use: at native resolution (stream views) they are held once, not thrice.
    sources = [(i, i + 1 if i + 1 in frames else i) for i in idx.tolist()]
    last_use = {key: k for k, pair in enumerate(sources) for key in pair}
    pairs = np.empty((len(sources), 2) + frames[sources[0][0]].shape, np.uint8)
    for k, pair in enumerate(sources):
        pairs[k, 0], pairs[k, 1] = frames[pair[0]], frames[pair[1]]
        for key in set(pair):
            if last_use[key] == k:
                del frames[key]
    return pairs, record


def read_frames(path: str | os.PathLike, indices, size=None, with_next: bool = False) -> np.ndarray:
    """Decode the frames at ``indices``: exactly the frames a full sequential decode gives there.

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
    frames, record = read_sampled_frames(path, indices, size, with_next)
    if record["remapped"]:
        assumed = int(np.max(indices))
        warnings.warn(
            ShortVideoWarning(
                f"{path}: only {record['frames_decoded']} frames decode but indices up to {assumed} were asked for; "
                f"indices re-mapped onto frames 0..{record['frames_decoded'] - 1}"
            ),
            stacklevel=2,
        )
    return frames
