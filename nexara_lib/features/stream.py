"""A feature stream: which frames of a clip, through which encoder. It owns the cache key.

A ``FeatureStream`` is built once from the run's parameters (``FeatureStream.from_params``)
and handed to extraction, training, TTA and ensembles, so the backbone spec is looked up
once, ``frames_per_clip`` keeps one name, and the cache key is computed in one place.
Everything that changes the numbers is in the key: backbone, weights, T, frame size and
the frame transform (clean, a frame-level TTA view, or a seeded augmentation copy).
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from nexara_lib.features.backbones import BackboneSpec, get_backbone_spec, resolve_image_size, weights_identity
from nexara_lib.features.cache import load_features
from nexara_lib.transforms.frame_copies import augmentation_transform_name, check_frame_augment_ops

IDENTITY = "identity"


@dataclasses.dataclass(frozen=True)
class FeatureStream:
    """One feature set of a run.

    Attributes:
        backbone: backbone registry name.
        weights: 'imagenet', 'none' or a local weights file.
        frames_per_clip: T, frames sampled evenly over each clip.
        image_size: square frame side asked for (0 = the backbone's own input size).
        transform: 'identity', a frame-level transform name, or an augmentation copy's name.
        augmentation: (ops, copy, seed) of a seeded augmentation copy, else None.
    """
    backbone: str
    weights: str
    frames_per_clip: int
    image_size: int = 0
    transform: str = IDENTITY
    augmentation: tuple | None = None

    def __post_init__(self):
        if isinstance(self.frames_per_clip, bool) or not isinstance(self.frames_per_clip, (int, np.integer)) \
                or self.frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be a positive integer, got {self.frames_per_clip!r}")
        _ = self.size  # an unknown backbone or an impossible frame size fails here, before any work

    @classmethod
    def from_params(cls, params: Mapping, backbone: str | None = None, weights: str | None = None) -> "FeatureStream":
        """The run's clean stream, or another backbone's (an ensemble member's) at the run's T and size.

        A backbone other than the run's takes 'none' weights when it is the weight-free ``flow``
        and 'imagenet' otherwise, unless ``weights`` says.
        """
        backbone = backbone or params["backbone"]
        if weights is None:
            weights = params["backbone_weights"] if backbone == params["backbone"] else (
                "none" if backbone == "flow" else "imagenet")
        return cls(backbone, weights, int(params["frames_per_clip"]), int(params["image_size"]))

    @classmethod
    def for_member(cls, member: Mapping, params: Mapping) -> "FeatureStream":
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
    def feature_dim(self) -> int:
        return self.spec.feature_dim

    @property
    def pairs(self) -> bool:
        """True when the encoder reads (frame, next frame) pairs (motion backbones)."""
        return self.spec.needs_next_frame

    @property
    def key(self) -> str:
        """The cache folder name: everything that changes the numbers."""
        return (f"{self.backbone}-{weights_identity(self.weights)}-T{self.frames_per_clip}-S{self.size}"
                f"-{self.transform}")

    def cache_dir(self, cache_root: str | Path) -> Path:
        return Path(cache_root) / self.key

    def with_transform(self, transform: str) -> "FeatureStream":
        """The same stream under a frame-level transform (a TTA view), cached under its own key."""
        return dataclasses.replace(self, transform=transform, augmentation=None)

    def augmentation_copy(self, ops, copy: int, seed: int) -> "FeatureStream":
        """Seeded augmentation copy ``copy`` (1..N) of this stream, cached under its own key."""
        ops = check_frame_augment_ops(list(ops))
        return dataclasses.replace(self, transform=augmentation_transform_name(ops, int(copy), int(seed)),
                                   augmentation=(tuple(ops), int(copy), int(seed)))

    def load(self, manifest_rows: pd.DataFrame, cache_root: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(x (N, T, D) float32, y (N,), clip ids) of the rows cached for this stream."""
        return load_features(manifest_rows, self.cache_dir(cache_root))

    def describe(self) -> dict:
        """Plain facts for ``meta.json`` and the notebooks."""
        return {"key": self.key, "backbone": self.backbone, "weights": self.weights,
                "frames_per_clip": self.frames_per_clip, "image_size": self.size, "transform": self.transform,
                "feature_dim": self.feature_dim, "preprocessing": self.spec.preprocessing}
