"""Several feature streams of one clip, side by side per frame: e.g. the whole frame, a motion crop and
optical-flow statistics. A model reads their concatenation (T, D1 + D2 + ...); its input
normalisation, fit on the training split, standardises every dimension, so each stream is
normalised on its own scale whatever the others' are.

A stream set is written as a list of items ``[backbone:]view``: ``identity`` (the run's backbone on
the whole frame), ``motion_crop``, ``motion_image`` (the whole frame's difference image),
``motion_image_crop`` (the difference image at the motion-crop window), ``tiles``, ``flow:identity``
(another backbone, at the run's T and frame size). The run's ``streams`` parameter is one such list;
``candidate_streams`` holds alternatives joined with ``+`` (``identity+motion_crop``) for the recipe
selection to compare.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.features.stream import IDENTITY, FeatureStream


def parse_stream_item(item: str, params: Mapping) -> FeatureStream:
    """One ``[backbone:]view`` item as a stream at the run's T and frame size."""
    if not isinstance(item, str) or not item.strip():
        raise ValueError(
            f"a stream item must be a non-empty string such as 'identity' or 'flow:identity', got {item!r}"
        )
    backbone, _, view = item.strip().rpartition(":")
    stream = FeatureStream.from_params(params, backbone or None)
    return stream if view == IDENTITY else stream.with_view(view, params)


@dataclasses.dataclass(frozen=True)
class StreamSet:
    """The streams a model reads, in order; loading concatenates them per frame."""

    items: tuple[str, ...]
    streams: tuple[FeatureStream, ...]

    @classmethod
    def parse(cls, spec: Sequence[str] | str, params: Mapping) -> StreamSet:
        """From a list of items or one ``+``-joined string (``identity+motion_crop``)."""
        items = tuple(i.strip() for i in (spec.split("+") if isinstance(spec, str) else spec))
        if not items:
            raise ValueError("a stream set needs at least one stream, e.g. ['identity']")
        if len(set(items)) != len(items):
            raise ValueError(f"stream set {'+'.join(items)!r} names a stream twice")
        return cls(items, tuple(parse_stream_item(item, params) for item in items))

    @classmethod
    def from_params(cls, params: Mapping) -> StreamSet:
        """The run's own stream set (``streams``)."""
        return cls.parse(params["streams"], params)

    @property
    def name(self) -> str:
        return "+".join(self.items)

    @property
    def feature_dim(self) -> int:
        return sum(s.feature_dim for s in self.streams)

    @property
    def single(self) -> FeatureStream | None:
        """The one stream when the set has exactly one, else None."""
        return self.streams[0] if len(self.streams) == 1 else None

    def with_transform(self, transform: str) -> StreamSet:
        """The set under a frame-level TTA view: only a single whole-frame stream can take one."""
        if self.single is None or self.single.transform != IDENTITY:
            raise ValueError(f"a frame-level TTA view applies to one whole-frame stream, not to {self.name!r}")
        return StreamSet(self.items, (self.single.with_transform(transform),))

    def load(self, manifest_rows: pd.DataFrame, cache_root: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(x (N, T, sum of D) float32, y, clip ids) of the rows cached in every stream, in manifest order."""
        loaded = [stream.load(manifest_rows, cache_root) for stream in self.streams]
        if len(loaded) == 1:
            return loaded[0]
        common = set.intersection(*(set(ids) for _, _, ids in loaded))
        order = [cid for cid in loaded[0][2] if cid in common]
        parts = []
        for x, _, ids in loaded:
            position = {cid: i for i, cid in enumerate(ids)}
            parts.append(x[[position[cid] for cid in order]])
        frames = {p.shape[1] for p in parts}
        if len(frames) != 1:
            raise ValueError(
                f"the streams of {self.name!r} have different frame counts {sorted(frames)}; "
                "every stream of a set must sample the same T frames"
            )
        y_first, ids_first = loaded[0][1], loaded[0][2]
        label = dict(zip(ids_first, y_first, strict=True))
        return np.concatenate(parts, axis=2), np.asarray([label[c] for c in order], dtype=np.int64), order
