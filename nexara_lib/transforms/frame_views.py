"""Stream views: regions of every sampled frame, each extracted as a feature stream of its own.

On wide, mostly static CCTV frames a fight fills a small part of the picture, and an embedding of
the whole frame dilutes it. Two views look closer, for every backbone alike:

- ``motion_crop``: per sampled frame, the window of ``fraction`` x (height, width) with the most
  frame-difference energy against the next decoded frame (``motion_window``; when nothing moves against
  it, typically a repeated frame, against the neighbouring sampled frame: ``motion_reference``), cropped
  from the native-resolution frame and resized to the backbone's input; a frame where nothing moves
  keeps the whole frame (counted in the read record as ``motion_fallback_frames``; frames compared with
  their neighbour as ``motion_neighbour_frames``). Pair backbones (``flow``) get both frames of the pair
  cropped with the same window. ``transforms.motion_images`` embeds the difference images themselves.
- ``tiles``: every sampled frame cut into ``grid`` x ``grid`` tiles (row-major; remainders spread like
  ``np.array_split``), each resized to the backbone's input and encoded on its own. A clip is cached
  as ``(T, grid * grid * D)``; ``pool_regions`` pools the tiles (max or mean) when features are loaded.

Resizing uses INTER_AREA like whole frames (``video.reader.to_rgb``), so a motion crop that falls back
to the whole frame gives exactly the clean stream's frame.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from nexara_lib.transforms.registry import StreamView, register_transform

# The frame difference is measured on a copy about this many pixels wide (never upscaled): the argmax
# of a half-frame window does not need full resolution, and it costs ~0.3 ms per pair at this size.
MOTION_WORK_WIDTH = 160
MOTION_BLUR_KSIZE = 5  # Gaussian blur (at the working size) of each grey frame before the difference
# Below this mean |difference| (grey levels) inside the best window, nothing moves: keep the whole frame.
MOTION_THRESHOLD = 1.0
POOLINGS = ("max", "mean")


# --------------------------------------------------------------------------
# Parameters and keys
# --------------------------------------------------------------------------
def _complete(name: str, params: Mapping, defaults: Mapping) -> dict:
    if not isinstance(params, Mapping):
        raise ValueError(f"view {name!r}: parameters must be a mapping like {dict(defaults)}, got {params!r}")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"view {name!r}: unknown parameter(s) {unknown}; its parameters are {sorted(defaults)}")
    return {**defaults, **params}


def _key_number(value: float) -> str:
    """Two decimals (0.5 -> '0.50') when they are exact, else every digit (0.125 -> '0.125'): no two
    values share a key."""
    text = f"{value:.2f}"
    return text if float(text) == value else repr(float(value))


MOTION_CROP_DEFAULTS = {"fraction": 0.5}
TILES_DEFAULTS = {"grid": 2, "pooling": "max"}


def check_motion_crop_params(params: Mapping) -> dict:
    """``params`` completed with the defaults; ``fraction`` must be a number in (0, 1]."""
    out = _complete("motion_crop", params, MOTION_CROP_DEFAULTS)
    fraction = out["fraction"]
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float, np.floating, np.integer))
        or not 0 < float(fraction) <= 1
    ):
        raise ValueError(
            f"view 'motion_crop': fraction must be a number in (0, 1] (the window's share of the "
            f"frame height and width; parameter motion_crop_fraction), got {fraction!r}"
        )
    out["fraction"] = float(fraction)
    return out


def check_tiles_params(params: Mapping) -> dict:
    """``params`` completed with the defaults; ``grid`` an integer >= 2, ``pooling`` 'max' or 'mean'."""
    out = _complete("tiles", params, TILES_DEFAULTS)
    grid = out["grid"]
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(
            f"view 'tiles': grid must be an integer >= 2 (tiles per side; parameter tiles_grid; "
            f"1 would be the whole frame, the clean stream), got {grid!r}"
        )
    if out["pooling"] not in POOLINGS:
        raise ValueError(
            f"view 'tiles': pooling must be one of {list(POOLINGS)} (parameter tile_pooling), got {out['pooling']!r}"
        )
    out["grid"] = int(grid)
    return out


# --------------------------------------------------------------------------
# Motion crop
# --------------------------------------------------------------------------
def _work_grey(frame: np.ndarray, work: tuple[int, int]) -> np.ndarray:
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)  # grid cells are views
    if (grey.shape[1], grey.shape[0]) != work:
        grey = cv2.resize(grey, work, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(grey, (MOTION_BLUR_KSIZE, MOTION_BLUR_KSIZE), 0)


def motion_window(frame: np.ndarray, following: np.ndarray, fraction: float) -> tuple[int, int, int, int] | None:
    """The window of ``fraction`` x (height, width) where ``frame`` differs most from ``following``.

    Both frames are turned grey, shrunk to ``MOTION_WORK_WIDTH`` pixels wide (never enlarged),
    blurred, and their absolute difference summed over every window position (an integral image);
    the first maximum in row-major order wins, so the choice is deterministic.

    Args:
        frame, following: (H, W, 3) uint8 RGB frames of one clip, the second right after the first.
        fraction: the window's share of the height and of the width, in (0, 1].
    Returns:
        (y, x, height, width) of the window in full-resolution pixels, or None when nothing moves
        (the best window's mean difference is below ``MOTION_THRESHOLD`` grey levels).
    """
    height, width = frame.shape[:2]
    scale = min(1.0, MOTION_WORK_WIDTH / width)
    work = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    diff = cv2.absdiff(_work_grey(frame, work), _work_grey(following, work))
    win_h = min(work[1], max(1, int(round(fraction * work[1]))))
    win_w = min(work[0], max(1, int(round(fraction * work[0]))))
    ii = cv2.integral(diff, sdepth=cv2.CV_64F)  # (h + 1, w + 1): exact sums of uint8 values in float64
    sums = ii[win_h:, win_w:] - ii[:-win_h, win_w:] - ii[win_h:, :-win_w] + ii[:-win_h, :-win_w]
    best = int(np.argmax(sums))  # first maximum, row-major
    if sums.flat[best] < MOTION_THRESHOLD * win_h * win_w:
        return None
    y, x = divmod(best, sums.shape[1])
    crop_h = min(height, max(1, int(round(fraction * height))))
    crop_w = min(width, max(1, int(round(fraction * width))))
    top = min(height - crop_h, int(round(y * height / work[1])))
    left = min(width - crop_w, int(round(x * width / work[0])))
    return top, left, crop_h, crop_w


def neighbour_of(i: int, count: int) -> int | None:
    """The sampled frame a frame ``i`` of ``count`` is compared with when nothing moves against its next decoded
    frame: the following sampled frame, the previous one for the last frame, None for a lone frame."""
    if count < 2:
        return None
    return i + 1 if i + 1 < count else i - 1


def motion_reference(
    frame: np.ndarray, following: np.ndarray, neighbour: np.ndarray | None, fraction: float
) -> tuple[tuple[int, int, int, int] | None, bool]:
    """The motion window of one sampled frame and what it was found against.

    Many CCTV clips repeat frames (15 fps stored at 30): when nothing moves against the next decoded
    frame (``motion_window`` is None), the frame is compared with ``neighbour``, its neighbouring sampled
    frame (``neighbour_of``; already decoded: still one pass).

    Returns:
        (window or None when nothing moves against either, True when the window, or the lack of one, comes
        from ``neighbour``: then ``neighbour`` is the frame's motion reference, else ``following`` is).
    """
    window = motion_window(frame, following, fraction)
    if window is not None or neighbour is None:
        return window, False
    return motion_window(frame, neighbour, fraction), True


def resize_square(frame: np.ndarray, size: int) -> np.ndarray:
    """A frame at the backbone's square size, INTER_AREA like ``video.reader.to_rgb``."""
    if frame.shape[:2] == (size, size):
        return np.ascontiguousarray(frame)
    return cv2.resize(np.ascontiguousarray(frame), (size, size), interpolation=cv2.INTER_AREA)


def crop_square(frame: np.ndarray, window: tuple[int, int, int, int] | None, size: int) -> np.ndarray:
    """``frame`` cut at ``window`` (y, x, height, width; None = the whole frame) and resized to ``size``."""
    if window is None:
        return resize_square(frame, size)
    top, left, crop_h, crop_w = window
    return resize_square(frame[top : top + crop_h, left : left + crop_w], size)


def _check_size(name: str, size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(
            f"view {name!r}: size must be the backbone's square input side (a positive integer), got {size!r}"
        )
    return int(size)


@register_transform(
    "motion_crop",
    "regions",
    "per sampled frame, the fraction x (height, width) window with the "
    "most frame-difference energy against the next frame, resized to the backbone's input; the "
    "whole frame when nothing moves",
    needs=("size", "pairs"),
    stream=StreamView(
        MOTION_CROP_DEFAULTS,
        check_motion_crop_params,
        key=lambda p: f"motion_crop-f{_key_number(p['fraction'])}",
        regions=lambda p: 1,
        reads_next=True,
    ),
)
def motion_crop(frames: np.ndarray, params: dict, size: int, pairs: bool) -> tuple[np.ndarray, dict]:
    """Crop every (frame, next frame) pair at its motion window and resize the crop to ``size``.

    Args:
        frames: (T, 2, H, W, 3) uint8 RGB (frame, next frame) pairs, native resolution.
        params: {"fraction"} (see ``check_motion_crop_params``).
        size: the backbone's square input side.
        pairs: the backbone reads pairs: also return the next frames, cropped with the same windows.
    Returns:
        ((T, S, S, 3), or (T, 2, S, S, 3) with ``pairs``; {"motion_fallback_frames": frames whose
        window is the whole frame because nothing moved}).
    """
    if frames.ndim != 5:
        raise ValueError(
            "view 'motion_crop' needs each sampled frame with its next frame, (T, 2, H, W, 3); "
            "decode with read_sampled_frames(..., size=None, with_next=True)"
        )
    fraction = check_motion_crop_params(params)["fraction"]
    size = _check_size("motion_crop", size)
    out = np.empty((len(frames), 2 if pairs else 1, size, size, 3), np.uint8)
    fallbacks = neighbours = 0
    for i, (frame, following) in enumerate(frames):
        k = neighbour_of(i, len(frames))
        window, from_neighbour = motion_reference(frame, following, None if k is None else frames[k, 0], fraction)
        fallbacks += window is None
        neighbours += from_neighbour
        for j in range(out.shape[1]):
            out[i, j] = crop_square(frames[i, j], window, size)
    return (out if pairs else out[:, 0]), {"motion_fallback_frames": fallbacks, "motion_neighbour_frames": neighbours}


# --------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------
def tile_bounds(length: int, grid: int) -> list[tuple[int, int]]:
    """(start, stop) of ``grid`` parts of ``length`` pixels, the remainder spread like ``np.array_split``."""
    base, extra = divmod(int(length), int(grid))
    stops = np.cumsum([base + (i < extra) for i in range(grid)])
    return [(int(stop - (base + (i < extra))), int(stop)) for i, stop in enumerate(stops)]


@register_transform(
    "tiles",
    "regions",
    "every sampled frame cut into grid x grid tiles (row-major), each resized "
    "to the backbone's input and encoded on its own; pooled over tiles (max or mean) on loading",
    needs=("size", "pairs"),
    stream=StreamView(
        TILES_DEFAULTS,
        check_tiles_params,
        key=lambda p: f"tiles-{p['grid']}x{p['grid']}",
        regions=lambda p: p["grid"] ** 2,
    ),
)
def tiles(frames: np.ndarray, params: dict, size: int, pairs: bool) -> tuple[np.ndarray, dict]:
    """Cut every frame (both frames of a pair alike) into ``grid`` x ``grid`` tiles at ``size``.

    Args:
        frames: (T, H, W, 3), or (T, 2, H, W, 3) pairs, uint8 RGB at native resolution.
        params: {"grid", "pooling"} (see ``check_tiles_params``; pooling acts when loading).
        size: the backbone's square input side.
        pairs: the backbone reads pairs: the input holds pairs, both frames are tiled alike.
    Returns:
        ((T * grid**2, S, S, 3), or (T * grid**2, 2, S, S, 3) for pairs; tiles of a frame in row-major
        order after one another; {"tiles": grid**2}).
    """
    grid = check_tiles_params(params)["grid"]
    size = _check_size("tiles", size)
    stacked = frames if frames.ndim == 5 else frames[:, None]
    if pairs and frames.ndim != 5:
        raise ValueError("view 'tiles' for a pair backbone needs (frame, next frame) pairs (T, 2, H, W, 3)")
    height, width = stacked.shape[2:4]
    if height < grid or width < grid:
        raise ValueError(
            f"view 'tiles': a {width}x{height} frame cannot be cut into {grid}x{grid} tiles; lower tiles_grid"
        )
    keep = 2 if pairs else 1
    out = np.empty((len(stacked), grid * grid, keep, size, size, 3), np.uint8)
    for r, (top, bottom) in enumerate(tile_bounds(height, grid)):
        for c, (left, right) in enumerate(tile_bounds(width, grid)):
            for i in range(len(stacked)):
                for j in range(keep):
                    out[i, r * grid + c, j] = resize_square(stacked[i, j, top:bottom, left:right], size)
    out = out.reshape((-1,) + out.shape[2:])
    return (out if pairs else out[:, 0]), {"tiles": grid * grid}


# --------------------------------------------------------------------------
# Pooling regions when loading
# --------------------------------------------------------------------------
def pool_regions(features: np.ndarray, regions: int, pooling: str) -> np.ndarray:
    """Pool cached ``(N, T, R * D)`` region features to ``(N, T, D)`` by ``pooling`` ('max' or 'mean')."""
    features = np.asarray(features)
    if regions == 1:
        return features
    if features.ndim != 3 or features.shape[-1] % regions:
        raise ValueError(
            f"pool_regions: expected (N, T, {regions} * D) features of {regions} regions per frame, "
            f"got shape {features.shape}; was the cache written by another view?"
        )
    if pooling not in POOLINGS:
        raise ValueError(f"pool_regions: pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    split = features.reshape(features.shape[:2] + (regions, features.shape[-1] // regions))
    return split.max(axis=2) if pooling == "max" else split.mean(axis=2, dtype=np.float32).astype(features.dtype)
