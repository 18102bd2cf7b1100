"""One clip's decoding work for feature extraction: what to read, and reading it (worker side).

A ``ClipJob`` is plain data (picklable, no model), so decoding can run in this
process, in decoder processes or on Ray workers alike and give the same frames.
``decode_job`` never raises for a bad clip: the error is returned, reported and
the clip skipped. Importing this module does not import TensorFlow.

Under a stream view (``motion_crop``, ``tiles``: ``transforms.frame_views``) the sampled frames are
decoded at native resolution and cut into ``job.regions`` regions per frame at the backbone's size
right here, so only ``T * regions`` small frames leave the decoder.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from nexara_lib.transforms.frame_copies import draw_augmentation
from nexara_lib.transforms.registry import StreamView, Transform, available_transforms, get_transform
from nexara_lib.video.frames import read_sampled_frames, sample_frame_indices
from nexara_lib.video.probe import probe_video
from nexara_lib.video.reader import VideoReadError


@dataclasses.dataclass(frozen=True)
class ClipJob:
    """What to decode for one clip under one transform."""

    name: str  # cache file name (clip id + content hash, ``cache.clip_cache_name``); seeds augmentation draws
    clip_id: str
    path: str
    n_frames: int  # verified frame count from the audit (0 = unknown: probed first)
    frames_per_clip: int  # T
    size: int  # square frame side the backbone takes
    pairs: bool  # (frame, next frame) pairs for motion backbones
    transform: str = "identity"  # clean, a frame-level TTA view, a stream view, or an augmentation copy
    augmentation: tuple | None = None  # (ops, copy, seed) for augmentation copies
    view_params: tuple = ()  # a stream view's parameters as sorted (name, value) pairs

    @property
    def regions(self) -> int:
        """Frames encoded per sampled frame: 1, or a stream view's regions (``tiles``: grid**2)."""
        view = stream_view(self)
        return 1 if view is None else int(view[1].regions(view[2]))

    @property
    def encoded_frames(self) -> int:
        """Frames of this clip the backbone encodes: T x regions."""
        return self.frames_per_clip * self.regions


@dataclasses.dataclass
class DecodedClip:
    """``decode_job``'s answer: frames, or the reason there are none."""

    job: ClipJob
    frames: np.ndarray | None
    error: str | None
    record: dict  # how it was read: padded, strategy, seeks, decode_s (elapsed), decode_cpu_s, ...


def sampled_indices(n_frames: int, t: int, pairs: bool = False) -> np.ndarray:
    """The T frame indices extracted from a clip of ``n_frames`` frames (before any sampling transform).

    Pairs need a real next frame, so they are sampled over [0, n-2] (the last step is never a frame
    paired with itself).
    """
    return sample_frame_indices(_sampling_span(n_frames, pairs), t)


def _sampling_span(n_frames: int, pairs: bool) -> int:
    """Frames the sampled indices may address: n_frames, or n_frames - 1 for (frame, next) pairs."""
    return n_frames - 1 if pairs and n_frames >= 2 else n_frames


def stream_view(job: ClipJob) -> tuple[Transform, StreamView, dict] | None:
    """(the stream view, its ``StreamView``, its checked parameters) when ``job.transform`` is one, else None."""
    if job.augmentation is not None or job.transform == "identity":
        if job.view_params:
            raise ValueError(
                f"clip job {job.name!r}: view parameters {dict(job.view_params)} given without a "
                "stream view; build the stream with FeatureStream.with_view"
            )
        return None
    entry = get_transform(job.transform)
    if entry.stream is None:
        if job.view_params:
            raise ValueError(
                f"transform {job.transform!r} is not a stream view and takes no view parameters; "
                f"stream views: {available_transforms(use='stream')}"
            )
        return None
    return entry, entry.stream, entry.stream.check(dict(job.view_params))


def _frame_transform(job: ClipJob):
    """(index resampling ``(indices, span=)`` or None, frame function or None, augmentation params or None)."""
    if job.augmentation is not None:
        ops, copy, seed = job.augmentation
        # keyed by the cache name (clip id and content, never a path): the same copy wherever the dataset lies
        aug = draw_augmentation(list(ops), job.name, copy, seed)
        return aug.jitter_indices, aug.apply, aug.params
    if job.transform == "identity" or stream_view(job) is not None:
        return None, None, None
    view = get_transform(job.transform)
    if view.level != "frame":
        raise ValueError(f"transform {job.transform!r} acts on features, not frames; apply it after loading features")
    if "tta" not in view.uses:
        raise ValueError(
            f"transform {job.transform!r} is an augmentation op drawn per copy, not a fixed view; "
            f"extract it as seeded augmentation copies"
        )
    apply = functools.partial(view.apply, params=view.view_params())
    return (apply, None, None) if view.acts_on == "sampling" else (None, apply, None)


def _apply_to_frames(fn, frames: np.ndarray) -> np.ndarray:
    if frames.ndim == 5:  # (T, 2, H, W, 3) pairs: transform both frames of every pair alike
        return np.stack([fn(frames[:, 0]), fn(frames[:, 1])], axis=1)
    return fn(frames)


def check_job_transform(job: ClipJob) -> None:
    """Raise ValueError for a transform that cannot apply to frames (before any worker starts)."""
    _frame_transform(job)


def decode_job(job: ClipJob) -> DecodedClip:
    """Read the T frames (or pairs) of ``job``, ``T * job.regions`` under a stream view; never raises for an
    unreadable clip.

    A view that reads each frame's next frame (``motion_crop``) samples like pairs do: over [0, n-2],
    so every sampled frame has a real next frame.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        n_frames = int(job.n_frames or 0)
        if n_frames <= 0:  # not audited: count the frames first
            n_frames = int(probe_video(job.path)["frames"] or 0)
        if n_frames < 1:
            raise VideoReadError("no decodable frames")
        resample, fn, aug_params = _frame_transform(job)
        view = stream_view(job)
        with_next = job.pairs or (view is not None and view[1].reads_next)
        indices = sampled_indices(n_frames, job.frames_per_clip, with_next)
        if resample is not None:
            indices = resample(indices, span=_sampling_span(n_frames, with_next))
        # a view cuts regions out of the native frames, then resizes them (never a resized frame re-cut)
        frames, record = read_sampled_frames(job.path, indices, size=None if view else job.size, with_next=with_next)
        if fn is not None:
            frames = _apply_to_frames(fn, frames)
        if view is not None:
            entry, _, view_params = view
            frames, view_record = entry.apply(frames, view_params, size=job.size, pairs=job.pairs)
            record.update(view_record)
    except (VideoReadError, ValueError, OSError) as err:
        return DecodedClip(
            job,
            None,
            str(err),
            {"decode_s": round(time.perf_counter() - t0, 4), "decode_cpu_s": round(time.process_time() - cpu0, 4)},
        )
    distinct = len(np.unique(indices))
    record.update(
        n_frames=n_frames,
        distinct_frames=distinct,
        padded=distinct < job.frames_per_clip,
        decode_s=round(time.perf_counter() - t0, 4),
        decode_cpu_s=round(time.process_time() - cpu0, 4),
    )
    if aug_params is not None:
        record["augmentation"] = aug_params
    return DecodedClip(job, frames, None, record)
