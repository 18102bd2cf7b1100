"""Seeded frame-level augmentation copies of training clips, for feature extraction.

Each training clip can be extracted N extra times, each copy a random but
reproducible combination of registered ops (``available_frame_augmentations()``):
``hflip``, ``brightness_contrast`` and ``rotate_zoom`` act on the decoded uint8
RGB frames, ``temporal_jitter`` on the sampled frame indices before decoding.
``draw_augmentation(ops, clip_key, copy, seed)`` draws every op's parameters once
per copy (the same for all frames of the clip, so motion is preserved) from a
stable hash of (seed, clip_key, copy, op): any process gets the same copy.
``augmentation_transform_name(ops, copy, seed)`` is the name the copy's features
are cached under beside the clean ones ("aug-<8 hex>-c<copy>").
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Callable, Sequence

import cv2
import numpy as np

from nexara_lib.registry import Registry

AUGMENTATION_NAME_PATTERN = re.compile(r"^aug-[0-9a-f]{8}-c[1-9][0-9]*$")  # augmentation_transform_name's output


@dataclasses.dataclass(frozen=True)
class FrameAugmentOp:
    """One registered op: how it draws its parameters and what it changes.

    Exactly one of ``apply_frames`` (pixels) and ``jitter_indices`` (sampling) is set.
    """

    name: str
    description: str
    draw: Callable[[np.random.Generator], dict]  # rng -> JSON-serialisable parameters, once per copy
    apply_frames: Callable[[np.ndarray, dict], np.ndarray] | None = None  # (F, H, W, 3) uint8 -> new array
    jitter_indices: Callable[[np.ndarray, int, dict], np.ndarray] | None = None  # (indices, span, params)


FRAME_AUGMENT_OPS = Registry("frame augmentation op")


def register_frame_augmentation(name: str, description: str, draw: Callable, *, apply_frames: Callable | None = None,
                                jitter_indices: Callable | None = None) -> FrameAugmentOp:
    """Add an op to ``FRAME_AUGMENT_OPS``.

    Args:
        name: the op name used in configs.
        description: one line saying what it does and why.
        draw: ``rng -> dict`` of plain JSON values, called once per copy.
        apply_frames: ``(frames (F, H, W, 3) uint8, params) -> new uint8 array`` for pixel ops.
        jitter_indices: ``(indices, span, params) -> indices`` for sampling ops.

    Returns:
        the registered ``FrameAugmentOp``.
    """
    if (apply_frames is None) == (jitter_indices is None):
        raise ValueError(f"frame augmentation op {name!r}: give exactly one of apply_frames and jitter_indices")
    return FRAME_AUGMENT_OPS.add(name, FrameAugmentOp(name, description, draw, apply_frames, jitter_indices))


def available_frame_augmentations() -> list[str]:
    """Names of the registered frame augmentation ops, sorted."""
    return FRAME_AUGMENT_OPS.names()


def check_frame_augment_ops(ops: Sequence[str]) -> list[str]:
    """Validate a list of op names.

    Args:
        ops: non-empty list of distinct names from ``available_frame_augmentations()``.

    Returns:
        the names as a list, in the given order.

    Raises:
        ValueError: for a non-list, an empty list, unknown names or duplicates; the message lists the known names.
    """
    known = available_frame_augmentations()
    if isinstance(ops, str) or not isinstance(ops, Sequence) or len(ops) == 0:
        raise ValueError(f"frame augmentation ops must be a non-empty list of names from {known}, got {ops!r}")
    unknown = [op for op in ops if not isinstance(op, str) or op not in FRAME_AUGMENT_OPS]
    if unknown:
        raise ValueError(f"unknown frame augmentation ops {unknown}; available: {known}")
    duplicates = sorted({op for op in ops if list(ops).count(op) > 1})
    if duplicates:
        raise ValueError(f"frame augmentation ops {duplicates} are listed more than once in {list(ops)}; "
                         f"list each op once (available: {known})")
    return list(ops)


# --------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------
def _draw_hflip(rng: np.random.Generator) -> dict:
    return {"flip": bool(rng.random() < 0.5)}


def _apply_hflip(frames: np.ndarray, params: dict) -> np.ndarray:
    return np.ascontiguousarray(frames[:, :, ::-1, :]) if params["flip"] else frames


def _draw_brightness_contrast(rng: np.random.Generator) -> dict:
    return {"alpha": float(rng.uniform(0.8, 1.2)), "beta": float(rng.uniform(-20.0, 20.0))}


def _apply_brightness_contrast(frames: np.ndarray, params: dict) -> np.ndarray:
    # convertScaleAbs would take |alpha * x + beta| and brighten the darkest pixels when beta < 0: clip instead.
    scaled = frames.astype(np.float32) * params["alpha"] + params["beta"]
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _draw_rotate_zoom(rng: np.random.Generator) -> dict:
    return {"angle": float(rng.uniform(-8.0, 8.0)), "zoom": float(rng.uniform(0.9, 1.1))}


def _apply_rotate_zoom(frames: np.ndarray, params: dict) -> np.ndarray:
    height, width = frames.shape[1:3]
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, params["angle"], params["zoom"])
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        # Reflected borders instead of black corners: black wedges would be a cue the clean clips never show.
        out[i] = cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101)
    return out


def _draw_temporal_jitter(rng: np.random.Generator) -> dict:
    # T is only known when indices are jittered, so record a seed for the per-index offsets.
    return {"seed": int(rng.integers(0, 2**31 - 1))}


def _jitter_temporal(indices: np.ndarray, span: int, params: dict) -> np.ndarray:
    stride = (span - 1) / max(len(indices) - 1, 1)
    reach = int(np.floor(0.5 * stride + 1e-9))  # |offset| <= half a stride, so neighbours cannot swap far
    offsets = np.random.default_rng(params["seed"]).integers(-reach, reach + 1, size=len(indices))
    return np.sort(np.clip(indices + offsets, 0, span - 1)).astype(np.int64)


register_frame_augmentation("hflip", "mirror left-right with probability 0.5: violence has no preferred direction",
                            _draw_hflip, apply_frames=_apply_hflip)
register_frame_augmentation("brightness_contrast", "contrast alpha ~ U(0.8, 1.2), brightness beta ~ U(-20, 20) "
                            "grey levels, clipped to uint8", _draw_brightness_contrast,
                            apply_frames=_apply_brightness_contrast)
register_frame_augmentation("rotate_zoom", "rotate by U(-8, 8) degrees and zoom by U(0.9, 1.1) about the centre, "
                            "reflected borders", _draw_rotate_zoom, apply_frames=_apply_rotate_zoom)
register_frame_augmentation("temporal_jitter", "move each sampled frame index by a random integer within half a "
                            "sampling stride", _draw_temporal_jitter, jitter_indices=_jitter_temporal)


# --------------------------------------------------------------------------
# Drawing and applying one copy
# --------------------------------------------------------------------------
def _check_copy_and_seed(copy: int, seed: int, where: str) -> None:
    if isinstance(copy, bool) or not isinstance(copy, (int, np.integer)) or copy < 1:
        raise ValueError(f"{where}: copy must be an integer >= 1 (copy numbers start at 1), got {copy!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"{where}: seed must be an integer, got {seed!r}")


def _stable_rng(seed: int, clip_key: str, copy: int, op: str) -> np.random.Generator:
    # hashlib, not hash(): Python salts str hashes per process, which would break reproducibility.
    text = json.dumps(["nexara-frame-augment", int(seed), clip_key, int(copy), op])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    single = frames.ndim == 4 and frames.shape[-1] == 3
    pairs = frames.ndim == 5 and frames.shape[1] == 2 and frames.shape[-1] == 3
    if not (single or pairs) or frames.dtype != np.uint8:
        raise ValueError(f"FrameAugmentation.apply expects uint8 RGB frames (T, H, W, 3) or pairs (T, 2, H, W, 3), "
                         f"got shape {frames.shape} dtype {frames.dtype}; decode with read_frames first")
    return frames


def _check_indices(indices, span) -> np.ndarray:
    if isinstance(span, bool) or not isinstance(span, (int, np.integer)) or span < 1:
        raise ValueError(f"jitter_indices: span must be a positive integer (n_frames, or n_frames - 1 for pairs), "
                         f"got {span!r}")
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"jitter_indices: indices must be a non-empty 1-D integer array (from sampled_indices), "
                         f"got shape {indices.shape} dtype {indices.dtype}")
    if indices.min() < 0 or indices.max() > span - 1:
        raise ValueError(f"jitter_indices: indices must lie in [0, span - 1] = [0, {span - 1}], got "
                         f"[{indices.min()}, {indices.max()}]; pass the span the indices were sampled over")
    return indices.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class FrameAugmentation:
    """One augmented copy of one clip: the ops and the parameters drawn for them.

    Build it with ``draw_augmentation``. Ops are applied in sorted name order, so the
    order they are listed in changes nothing (nor does it change the transform name).
    """

    ops: tuple[str, ...]  # sorted op names
    clip_key: str
    copy: int  # >= 1
    seed: int
    params_json: str  # {op: params} as JSON, the record written next to the features

    @property
    def params(self) -> dict:
        """{op name: its drawn parameters}, plain JSON values (a fresh dict each call)."""
        return json.loads(self.params_json)

    @property
    def transform_name(self) -> str:
        """The name this copy's features are cached under (see ``augmentation_transform_name``)."""
        return augmentation_transform_name(self.ops, self.copy, self.seed)

    def jitter_indices(self, indices, span: int) -> np.ndarray:
        """Jitter sampled frame indices (identity unless ``temporal_jitter`` is among the ops).

        Args:
            indices: (T,) int indices in [0, span - 1], e.g. from ``features.sampled_indices``.
            span: frames the indices may address: n_frames, or n_frames - 1 for (frame, next) pairs.

        Returns:
            (T,) int64 indices, non-decreasing, within [0, span - 1].
        """
        out = _check_indices(indices, span)
        params = self.params
        for name in self.ops:
            op = FRAME_AUGMENT_OPS.lookup(name)
            if op.jitter_indices is not None:
                out = op.jitter_indices(out, int(span), params[name])
        return out

    def apply(self, frames) -> np.ndarray:
        """Apply the pixel ops with this copy's parameters to every frame alike.

        Args:
            frames: (T, H, W, 3) uint8 RGB, or (T, 2, H, W, 3) (frame, next frame) pairs.

        Returns:
            a new uint8 array of the same shape; the input is not modified.
        """
        frames = _check_frames(frames)
        # Same parameters for every frame: flattening pairs transforms both frames of a pair identically.
        out = frames.reshape((-1,) + frames.shape[-3:])
        params = self.params
        for name in self.ops:
            op = FRAME_AUGMENT_OPS.lookup(name)
            if op.apply_frames is not None:
                out = op.apply_frames(out, params[name])
        if np.shares_memory(out, frames):
            out = out.copy()
        return out.reshape(frames.shape)

    def __call__(self, frames) -> np.ndarray:
        """Same as ``apply``, so a copy can stand where a frame transform function is expected."""
        return self.apply(frames)


def draw_augmentation(ops: Sequence[str], clip_key: str, copy: int, seed: int) -> FrameAugmentation:
    """Draw the parameters of augmented copy ``copy`` of one clip.

    Each op draws from its own generator seeded by a SHA-256 of (seed, clip_key, copy, op),
    so the result is the same in every process, and adding an op does not change the others.

    Args:
        ops: names from ``available_frame_augmentations()``, each at most once.
        clip_key: a stable identifier of the clip (e.g. its clip id or cache file name).
        copy: the copy number, from 1.
        seed: the experiment's augmentation seed.

    Returns:
        the ``FrameAugmentation`` holding the drawn parameters.
    """
    names = sorted(check_frame_augment_ops(ops))
    _check_copy_and_seed(copy, seed, "draw_augmentation")
    if not isinstance(clip_key, str) or not clip_key:
        raise ValueError(f"draw_augmentation: clip_key must be a non-empty string (e.g. the clip id), got {clip_key!r}")
    params = {name: FRAME_AUGMENT_OPS.lookup(name).draw(_stable_rng(seed, clip_key, copy, name)) for name in names}
    return FrameAugmentation(tuple(names), clip_key, int(copy), int(seed), json.dumps(params, sort_keys=True))


def augmentation_transform_name(ops: Sequence[str], copy: int, seed: int) -> str:
    """The transform name under which copy ``copy`` is cached: ``"aug-<8 hex>-c<copy>"``.

    Args:
        ops: the op names (order does not matter).
        copy: the copy number, from 1.
        seed: the augmentation seed.

    Returns:
        a name whose hex part is a SHA-1 of the sorted ops and the seed, so different ops or seeds never share a cache.
    """
    names = sorted(check_frame_augment_ops(ops))
    _check_copy_and_seed(copy, seed, "augmentation_transform_name")
    digest = hashlib.sha1(json.dumps({"ops": names, "seed": int(seed)}).encode("utf-8")).hexdigest()[:8]
    return f"aug-{digest}-c{int(copy)}"


def is_augmentation_transform(name) -> bool:
    """Whether ``name`` is a transform name made by ``augmentation_transform_name``."""
    return isinstance(name, str) and AUGMENTATION_NAME_PATTERN.match(name) is not None
