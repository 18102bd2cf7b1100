"""A window's features computed live exactly as extraction computed a clip's: same frames, same
preprocessing, same backbone, same rounding as the cache.

Extraction (``features.clip_jobs.decode_job``) resizes every sampled frame to the backbone's square
size with INTER_AREA, or hands the native frames to a stream view (``motion_crop``, ``tiles``); the
backbone encodes them; the cache rounds to float16; loading pools a view's regions. Here the same
steps run per sampled frame as soon as it (and its next frame, where read) has arrived, so a
window's backbone work is spread over the window instead of landing at its end. A view whose output
for one frame depends on the window's other frames (``motion_crop`` compares with the neighbouring
sampled frame when nothing moves) runs on the whole window when it completes.

Inputs of many cells (and windows) are batched into one backbone call per encoder.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence

import cv2
import numpy as np

from nexara_lib.features.backbones import create_backbone
from nexara_lib.features.cache import as_cached
from nexara_lib.features.stream import FeatureStream
from nexara_lib.transforms.frame_views import pool_regions
from nexara_lib.transforms.registry import get_transform

# Stream views whose output for a frame depends on the other sampled frames of its window.
WINDOW_LEVEL_VIEWS = ("motion_crop",)


def resize_like_training(frame: np.ndarray, size: int) -> np.ndarray:
    """An RGB frame at the backbone's square size, as ``video.reader.to_rgb`` resizes decoded frames."""
    if frame.shape[:2] == (size, size):
        return np.ascontiguousarray(frame)
    return cv2.resize(np.ascontiguousarray(frame), (size, size), interpolation=cv2.INTER_AREA)


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

    def window_level(self, i: int) -> bool:
        """True when stream ``i`` is computed on whole windows (its view looks at neighbouring sampled frames)."""
        return self.streams[i].transform in WINDOW_LEVEL_VIEWS and self.streams[i].view is not None

    @property
    def needs_native_frames(self) -> bool:
        """Whether picked frames must be kept until their window completes."""
        return any(self.window_level(i) for i in range(len(self.streams)))

    def _prepare(self, i: int, frames: np.ndarray, nexts: np.ndarray | None) -> np.ndarray:
        """Backbone inputs of sampled frames (N, H, W, 3) (+ their next frames) for stream ``i``:
        (N * regions, S, S, 3), or (N * regions, 2, S, S, 3) for pair backbones."""
        stream = self.streams[i]
        size = stream.size
        if stream.view is None:
            small = np.stack([resize_like_training(f, size) for f in frames])
            if not stream.pairs:
                return small
            following = np.stack([resize_like_training(f, size) for f in nexts])
            return np.stack([small, following], axis=1)
        native = np.stack([frames, nexts], axis=1) if stream.reads_next else frames
        out, _ = get_transform(stream.transform).apply(native, dict(stream.view_params), size=size, pairs=stream.pairs)
        return out

    def frame_job(self, i: int, frame: np.ndarray, next_frame: np.ndarray | None) -> np.ndarray:
        """Backbone inputs of one sampled frame for a per-frame stream ``i``."""
        return self._prepare(i, frame[None], None if next_frame is None else next_frame[None])

    def window_job(self, i: int, frames: Sequence[np.ndarray], nexts: Sequence[np.ndarray] | None) -> np.ndarray:
        """Backbone inputs of a window's T sampled frames for stream ``i`` (any stream)."""
        return self._prepare(i, np.stack(frames), None if nexts is None else np.stack(nexts))

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
