"""A feature stream: which frames of a clip, through which encoder. It owns the cache key.

A ``FeatureStream`` is built once from the run's parameters (``FeatureStream.from_params``)
and handed to extraction, training, TTA and ensembles, so the backbone spec is looked up
once, ``frames_per_clip`` keeps one name, and the cache key is computed in one place.
Everything that changes the numbers is in the key: backbone, weights, T, frame size and
the frame transform (clean, a frame-level TTA view, a stream view with its parameters, e.g.
``motion_crop-f0.50``, ``motion_image_crop-g4.00-f0.50`` or ``tiles-2x2``, or a seeded augmentation
copy). A stream view of R regions per frame is cached as (T, R * D); ``load`` pools the regions
(``tile_pooling``), so every model sees (T, D).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.config import SCHEMA
from nexara_lib.features.backbones import (
    BackboneSpec,
    feature_dim,
    get_backbone_spec,
    resolve_image_size,
    weights_identity,
)
from nexara_lib.features.cache import load_features
from nexara_lib.transforms.frame_copies import augmentation_transform_name, check_frame_augment_ops
from nexara_lib.transforms.frame_views import pool_regions
from nexara_lib.transforms.registry import TRANSFORMS, StreamView, available_transforms

IDENTITY = "identity"
# Run parameters of each stream view: view parameter -> schema key (``view_params_from``).
VIEW_PARAM_KEYS = {
    "motion_crop": {"fraction": "motion_crop_fraction"},
    "motion_image": {"gain": "motion_image_gain", "fraction": "motion_crop_fraction"},
    "motion_image_crop": {"gain": "motion_image_gain", "fraction": "motion_crop_fraction"},
    "tiles": {"grid": "tiles_grid", "pooling": "tile_pooling"},
}


def view_params_from(params: Mapping, view: str) -> dict:
    """The parameters of stream view ``view`` from a run's parameters (schema defaults where missing)."""
    if view not in VIEW_PARAM_KEYS:
        raise ValueError(f"{view!r} has no run parameters; stream views: {sorted(VIEW_PARAM_KEYS)}")
    return {name: params.get(key, SCHEMA[key].default) for name, key in VIEW_PARAM_KEYS[view].items()}


@dataclasses.dataclass(frozen=True)
class FeatureStream:
    """One feature set of a run.

    Attributes:
        backbone: backbone registry name.
        weights: 'imagenet', 'none' or a local weights file.
        frames_per_clip: T, frames sampled evenly over each clip.
        image_size: square frame side asked for (0 = the backbone's own input size).
        transform: 'identity', a frame-level transform name, a stream view's name, or an augmentation
            copy's name.
        augmentation: (ops, copy, seed) of a seeded augmentation copy, else None.
        view_params: a stream view's checked parameters as sorted (name, value) pairs (``with_view``).
    """

    backbone: str
    weights: str
    frames_per_clip: int
    image_size: int = 0
    transform: str = IDENTITY
    augmentation: tuple | None = None
    view_params: tuple = ()

    def __post_init__(self):
        if (
            isinstance(self.frames_per_clip, bool)
            or not isinstance(self.frames_per_clip, (int, np.integer))
            or self.frames_per_clip < 1
        ):
            raise ValueError(f"frames_per_clip must be a positive integer, got {self.frames_per_clip!r}")
        _ = self.size  # an unknown backbone or an impossible frame size fails here, before any work
        view = self.view
        if view is None and self.view_params:
            raise ValueError(
                f"view_params {dict(self.view_params)} need a stream view as transform, got "
                f"{self.transform!r}; stream views: {available_transforms(use='stream')}"
            )
        if view is not None:  # complete and check once: equal parameters, equal streams, equal keys
            checked = view.check(dict(self.view_params))
            object.__setattr__(self, "view_params", tuple(sorted(checked.items())))
            if self.pairs and not view.pair_backbones:
                raise ValueError(
                    f"stream view {self.transform!r} gives images that are not frames of the clip, but backbone "
                    f"{self.backbone!r} reads (frame, next frame) pairs; use it with the run's image backbone "
                    f"(the item {self.transform!r}, not '{self.backbone}:{self.transform}')"
                )

    @classmethod
    def from_params(cls, params: Mapping, backbone: str | None = None, weights: str | None = None) -> FeatureStream:
        """The run's clean stream, or another backbone's (an ensemble member's) at the run's T and size.

        A backbone other than the run's takes 'none' weights when it is the weight-free ``flow``
        and 'imagenet' otherwise, unless ``weights`` says.
        """
        backbone = backbone or params["backbone"]
        if weights is None:
            weights = (
                params["backbone_weights"]
                if backbone == params["backbone"]
                else ("none" if backbone == "flow" else "imagenet")
            )
        return cls(backbone, weights, int(params["frames_per_clip"]), int(params["image_size"]))

    @classmethod
    def for_member(cls, member: Mapping, params: Mapping) -> FeatureStream:
        """The stream an ensemble member ``{model, seed, backbone?, backbone_weights?}`` reads."""
        return cls.from_params(params, member.get("backbone"), member.get("backbone_weights"))

    @functools.cached_property
    def spec(self) -> BackboneSpec:
        return get_backbone_spec(self.backbone)

    @functools.cached_property
    def size(self) -> int:
        """The square frame side the backbone gets."""
        return resolve_image_size(self.backbone, self.image_size)

    @property
    def view(self) -> StreamView | None:
        """The stream view's registry facts, or None for every other transform."""
        if self.augmentation is not None or self.transform not in TRANSFORMS:
            return None
        return TRANSFORMS[self.transform].stream

    @property
    def regions(self) -> int:
        """Frames encoded per sampled frame: 1, or the stream view's regions (``tiles``: grid**2)."""
        view = self.view
        return 1 if view is None else int(view.regions(dict(self.view_params)))

    @property
    def feature_dim(self) -> int:
        """D of what ``load`` returns: one frame's (or, pooled, one region's) feature length."""
        return feature_dim(self.backbone)

    @property
    def cached_dim(self) -> int:
        """Columns of a cached clip file: regions x D."""
        return self.regions * self.feature_dim

    @property
    def pairs(self) -> bool:
        """True when the encoder reads (frame, next frame) pairs (motion backbones)."""
        return self.spec.needs_next_frame

    @property
    def reads_next(self) -> bool:
        """True when each sampled frame is read with its next frame (pair backbones, ``motion_crop``): frames are
        then sampled over [0, n - 2] (``clip_jobs.sampled_indices``)."""
        view = self.view
        return self.pairs or (view is not None and view.reads_next)

    @property
    def key(self) -> str:
        """The cache folder name: everything that changes the numbers."""
        view = self.view
        transform = self.transform if view is None else view.key(dict(self.view_params))
        return f"{self.backbone}-{weights_identity(self.weights)}-T{self.frames_per_clip}-S{self.size}-{transform}"

    def cache_dir(self, cache_root: str | Path) -> Path:
        return Path(cache_root) / self.key

    def with_transform(self, transform: str) -> FeatureStream:
        """The same stream under a frame-level transform (a TTA view), cached under its own key; a stream
        view's name gives ``with_view(transform)`` (its default parameters)."""
        if transform in available_transforms(use="stream"):
            return self.with_view(transform)
        return dataclasses.replace(self, transform=transform, augmentation=None, view_params=())

    def with_view(self, name: str, params: Mapping | None = None, **view_params) -> FeatureStream:
        """The same stream under stream view ``name`` ('motion_crop', 'motion_image', 'motion_image_crop',
        'tiles'), cached under its own key.

        Args:
            name: a transform serving "stream" (``available_transforms(use="stream")``).
            params: a run's parameters, read for the view's (``view_params_from``: motion_crop_fraction,
                motion_image_gain, tiles_grid, tile_pooling); None = the view's own defaults (fraction=0.5;
                gain=4.0; grid=2, pooling='max').
            **view_params: the view's parameters by name (fraction; gain; grid, pooling); they win over ``params``.
        Raises:
            ValueError: an unknown view or parameter, or a value out of range.
        """
        views = available_transforms(use="stream")
        if name not in views:
            raise ValueError(
                f"with_view: {name!r} is not a stream view; stream views: {views} (frame-level "
                "test-time views go through with_transform)"
            )
        given = {**(view_params_from(params, name) if params is not None else {}), **view_params}
        return dataclasses.replace(self, transform=name, augmentation=None, view_params=tuple(sorted(given.items())))

    def augmentation_copy(self, ops, copy: int, seed: int) -> FeatureStream:
        """Seeded augmentation copy ``copy`` (1..N) of this stream, cached under its own key."""
        ops = check_frame_augment_ops(list(ops))
        return dataclasses.replace(
            self,
            transform=augmentation_transform_name(ops, int(copy), int(seed)),
            augmentation=(tuple(ops), int(copy), int(seed)),
            view_params=(),
        )

    def load(self, manifest_rows: pd.DataFrame, cache_root: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(x (N, T, D) float32, y (N,), clip ids) of the rows cached for this stream; a stream view's
        regions are pooled here by its ``pooling`` ('max' or 'mean' over the regions of each frame).

        Every clip file is checked (checksum, T, regions: ``cache.read_features``); a bad one raises
        ``CacheEntryError`` naming it, and re-running extraction computes it again."""
        x, y, ids = load_features(manifest_rows, self.cache_dir(cache_root), self.frames_per_clip, self.regions)
        if self.regions > 1:
            x = pool_regions(x, self.regions, dict(self.view_params)["pooling"])
        return x, y, ids

    def describe(self) -> dict:
        """Plain facts for ``meta.json`` and the notebooks."""
        return {
            "key": self.key,
            "backbone": self.backbone,
            "weights": self.weights,
            "frames_per_clip": self.frames_per_clip,
            "image_size": self.size,
            "transform": self.transform,
            "view_params": dict(self.view_params),
            "regions": self.regions,
            "cached_dim": self.cached_dim,
            "feature_dim": self.feature_dim,
            "preprocessing": self.spec.preprocessing,
        }
