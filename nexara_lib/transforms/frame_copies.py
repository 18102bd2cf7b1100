"""Seeded frame-level augmentation copies of training clips, for feature extraction.

Each training clip can be extracted N extra times, each copy a random but reproducible
combination of frame-level augmentation transforms (``available_transforms("frame", "augment")``):
``hflip``, ``brightness_contrast`` and ``rotate_zoom`` act on the decoded uint8 RGB frames,
``temporal_jitter`` on the sampled frame indices before decoding.
``draw_augmentation(ops, clip_key, copy, seed)`` draws every op's parameters once per copy (the
same for all frames of the clip, so motion is preserved) from a stable hash of
(seed, clip_key, copy, op): any process gets the same copy.
``augmentation_transform_name(ops, copy, seed)`` is the name the copy's features are cached
under beside the clean ones ("aug-<8 hex>-c<copy>").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence

import numpy as np

from nexara_lib.transforms.registry import available_transforms, check_indices, check_transform_names, get_transform

AUGMENTATION_NAME_PATTERN = re.compile(r"^aug-[0-9a-f]{8}-c[1-9][0-9]*$")  # augmentation_transform_name's output


def check_frame_augment_ops(ops: Sequence[str]) -> list[str]:
    """Validate a list of frame augmentation op names.

    Args:
        ops: non-empty list of distinct names from ``available_transforms("frame", "augment")``.

    Returns:
        the names as a list, in the given order.

    Raises:
        ValueError: for a non-list, an empty list, unknown or unfit names, or duplicates; the message
            lists the known names.
    """
    ops = check_transform_names(ops, level="frame", use="augment", what="frame augmentation ops")
    duplicates = sorted({op for op in ops if ops.count(op) > 1})
    if duplicates:
        raise ValueError(
            f"frame augmentation ops {duplicates} are listed more than once in {ops}; "
            f"list each op once (available: {available_transforms('frame', 'augment')})"
        )
    return ops


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
        raise ValueError(
            f"FrameAugmentation.apply expects uint8 RGB frames (T, H, W, 3) or pairs (T, 2, H, W, 3), "
            f"got shape {frames.shape} dtype {frames.dtype}; decode with read_frames first"
        )
    return frames


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
        """Apply the sampling ops (``temporal_jitter``) to sampled frame indices; identity without them.

        Args:
            indices: (T,) int indices in [0, span - 1], e.g. from ``features.clip_jobs.sampled_indices``.
            span: frames the indices may address: n_frames, or n_frames - 1 for (frame, next) pairs.

        Returns:
            (T,) int64 indices, non-decreasing, within [0, span - 1] (always a new array).
        """
        out = check_indices("jitter_indices", indices, span)
        params = self.params
        for name in self.ops:
            op = get_transform(name)
            if op.acts_on == "sampling":
                out = op.apply(out, params[name], span=int(span))
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
            op = get_transform(name)
            if op.acts_on == "pixels":
                out = op.apply(out, params[name])
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
        ops: frame-level augmentation transform names, each at most once.
        clip_key: a stable identifier of the clip that does not depend on where it lies (extraction passes its
            cache file name: clip id and content hash); a key with an absolute path in it would give another
            copy for the same clip at another location.
        copy: the copy number, from 1.
        seed: the experiment's augmentation seed.

    Returns:
        the ``FrameAugmentation`` holding the drawn parameters.
    """
    names = sorted(check_frame_augment_ops(ops))
    _check_copy_and_seed(copy, seed, "draw_augmentation")
    if not isinstance(clip_key, str) or not clip_key:
        raise ValueError(f"draw_augmentation: clip_key must be a non-empty string (e.g. the clip id), got {clip_key!r}")
    params = {}
    for name in names:
        draw = get_transform(name).draw
        if draw is None:  # check_frame_augment_ops admits only transforms that serve "augment", so a bug
            raise ValueError(f"draw_augmentation: transform {name!r} has no draw; it cannot augment frames")
        params[name] = draw(_stable_rng(seed, clip_key, copy, name))
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
