"""A window's features computed live exactly as extraction computed a clip's: same frames, same
preprocessing, same backbone, same rounding as the cache.

Extraction (``features.clip_jobs.decode_job``) resizes every sampled frame to the backbone's square
size with INTER_AREA, or hands the native frames to a stream view (``motion_crop``, ``motion_image``,
``motion_image_crop``, ``tiles``); the backbone encodes them; the cache rounds to float16; loading pools
a view's regions. ``WindowFeatures`` holds the streams and their encoders and does the encoding, the
rounding and the pooling; ``deploy.frame_products`` computes each sampled frame's view inputs once, as
soon as the frame (and its next frame) has arrived, and shares them between windows and streams.

Inputs of many cells (and frames) are batched into one backbone call per encoder.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence

import numpy as np

from nexara_lib.features.backbones import create_backbone
from nexara_lib.features.cache import as_cached
from nexara_lib.features.stream import FeatureStream
from nexara_lib.transforms.frame_views import pool_regions

# Stream views the detector computes live (``deploy.frame_products``): views that look at a frame's motion
# (its next frame, or its neighbouring sampled frame when nothing moves against the next one), and views of
# a frame alone.
MOTION_VIEWS = ("motion_crop", "motion_image", "motion_image_crop")
FRAME_VIEWS = ("tiles",)


class WindowFeatures:
    """The run's streams, computed for live frames.

    Args:
        streams: the feature streams the model reads, in order (a ``StreamSet``'s ``streams``).
        encoders: optional ready encoders by ``encoder_key`` (tests and benchmarks share one).
    Attributes:
        model_s: seconds spent in backbone calls; calls: backbone calls; frames: frames encoded.
    """

    def __init__(self, streams: Sequence[FeatureStream], encoders: dict | None = None):
        if not streams:
            raise ValueError("the detector needs at least one feature stream")
        self.streams = tuple(streams)
        for stream in self.streams:
            if stream.view is not None and stream.transform not in MOTION_VIEWS + FRAME_VIEWS:
                raise ValueError(
                    f"the detector cannot compute stream view {stream.transform!r} live; it knows "
                    f"{list(MOTION_VIEWS + FRAME_VIEWS)}"
                )
        self.encoders = dict(encoders or {})
        for stream in self.streams:
            key = self.encoder_key(stream)
            if key not in self.encoders:
                self.encoders[key] = create_backbone(stream.backbone, stream.weights, stream.image_size)
        self.model_s, self.calls, self.frames = 0.0, 0, 0

    @staticmethod
    def encoder_key(stream: FeatureStream) -> tuple:
        return stream.backbone, stream.weights, stream.size

    @property
    def reads_next(self) -> list[bool]:
        return [s.reads_next for s in self.streams]

    @property
    def feature_dim(self) -> int:
        return sum(s.feature_dim for s in self.streams)

    def encode(self, jobs: Sequence[tuple[Hashable, int, np.ndarray]]) -> dict:
        """Encode many jobs ``(key, stream index, inputs)`` with one backbone call per encoder.

        Returns:
            key -> (rows, D) features rounded like the cache (a job of R regions per frame gives R * frames rows).
        """
        by_encoder: dict[tuple, list] = {}
        for key, i, inputs in jobs:
            by_encoder.setdefault(self.encoder_key(self.streams[i]), []).append((key, inputs))
        out = {}
        for enc_key, items in by_encoder.items():
            batch = np.concatenate([inputs for _, inputs in items])
            t0 = time.perf_counter()
            feats = np.asarray(self.encoders[enc_key](np.ascontiguousarray(batch)), dtype=np.float32)
            self.model_s += time.perf_counter() - t0
            self.calls += 1
            self.frames += len(batch)
            feats = as_cached(feats)
            start = 0
            for key, inputs in items:
                out[key] = feats[start : start + len(inputs)]
                start += len(inputs)
        return out

    def pooled(self, i: int, rows: np.ndarray, frames: int) -> np.ndarray:
        """(frames, D) features of stream ``i`` from its encoded rows, a view's regions pooled as loading does."""
        stream = self.streams[i]
        per_frame = rows.reshape(frames, -1)
        if stream.regions > 1:
            per_frame = pool_regions(per_frame[None], stream.regions, dict(stream.view_params)["pooling"])[0]
        return per_frame
