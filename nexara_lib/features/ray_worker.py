"""The worker side of the Ray executor: what runs on a Ray worker for one chunk of clips.

A chunk is decoded with ``clip_jobs.decode_job`` and encoded with ``local_executor.FeatureBatcher``,
exactly like the local executor. CPU tasks (``run_chunk_task``) keep the backbone of each worker
process in ``_ENCODERS``, so later tasks on that worker reuse it; a GPU actor
(``ChunkEncoderActor``) builds it once. A backbone that cannot be built is reported back to the
driver (``features.ray_executor``), which stops the run.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable

import cv2
import numpy as np

from nexara_lib.features.clip_jobs import ClipJob, decode_job
from nexara_lib.features.local_executor import FeatureBatcher
from nexara_lib.video.reader import set_decoder_threads

# Per worker process: (backbone, weights, weights file identity, size, mixed_precision) -> encoder, built on the
# first chunk that needs it.
_ENCODERS: dict = {}


@dataclasses.dataclass(frozen=True)
class ChunkSettings:
    """What a Ray worker needs besides the clips: which encoder to build and its batch size."""

    backbone: str
    weights: str
    size: int  # square frame side the backbone takes
    mixed_precision: str  # 'auto' | 'on' | 'off' (Keras backbones)
    batch_frames: int  # frames per backbone call


# A chunk: (index into the driver's job list, job) pairs.
Chunk = list[tuple[int, ClipJob]]
# What a chunk runner returns: [(job index, features or None, error or None, record)], model seconds.
ChunkRunner = Callable[[Callable, Chunk, int], tuple[list, float]]


def encode_chunk(encode: Callable[[np.ndarray], np.ndarray], chunk: Chunk, batch_frames: int) -> tuple[list, float]:
    """Decode and encode one chunk of clips (runs on a Ray worker; also callable here).

    Args:
        encode: the backbone's ``frames -> (N, D) float32`` encoder.
        chunk: (job index, ClipJob) pairs.
        batch_frames: frames per backbone call.
    Returns:
        ([(job index, features (T, D) float32 (stream views: (T, regions * D)) or None, error or None, record)],
        seconds in ``encode``).
    """
    batcher: FeatureBatcher[int] = FeatureBatcher(encode, batch_frames)
    results: list[tuple[int, np.ndarray | None, str | None, dict]] = []
    records: dict[int, dict] = {}
    for index, job in chunk:
        answer = decode_job(job)
        if answer.error is not None or answer.frames is None:
            results.append((index, None, answer.error or "the decoder returned no frames", answer.record))
            continue
        records[index] = answer.record
        for done, feats in batcher.add(index, answer.frames, job.regions):
            results.append((done, feats, None, records.pop(done)))
    for done, feats in batcher.flush():
        results.append((done, feats, None, records.pop(done)))
    return results, batcher.model_s


def _worker_encoder(settings: ChunkSettings):
    """This worker process's encoder for ``settings``, built once and kept in ``_ENCODERS``."""
    from nexara_lib.features.backbones import create_backbone, weights_identity

    try:  # a weights file's content hash: a file replaced between runs on a long-lived worker is reloaded
        weights = weights_identity(settings.weights)
    except OSError:
        weights = settings.weights  # missing here: create_backbone says so
    key = (settings.backbone, settings.weights, weights, settings.size, settings.mixed_precision)
    if key not in _ENCODERS:
        _ENCODERS[key] = create_backbone(
            settings.backbone, settings.weights, settings.size, mixed_precision=settings.mixed_precision
        )
    return _ENCODERS[key]


def _setup_error(settings: ChunkSettings, err: Exception) -> str:
    """Why a worker could not build its backbone, with the host it ran on."""
    return (
        f"a Ray worker on {socket.gethostname()} could not build backbone {settings.backbone!r} "
        f"(weights {settings.weights!r}, size {settings.size}): {type(err).__name__}: {err}"
    )


def run_chunk_task(settings: ChunkSettings, chunk: Chunk, chunk_runner: ChunkRunner) -> tuple[list, float, str | None]:
    """Body of a CPU task: one core, the worker's cached backbone, one chunk.

    Returns:
        (results, model seconds, None), or ([], 0.0, reason) when the backbone cannot be built.
    """
    cv2.setNumThreads(1)  # one task per core: OpenCV's own thread pool would oversubscribe it
    set_decoder_threads(1)
    try:
        encode = _worker_encoder(settings)
    except Exception as err:  # noqa: BLE001  (any build failure is reported to the driver, which stops)
        return [], 0.0, _setup_error(settings, err)
    results, model_s = chunk_runner(encode, chunk, settings.batch_frames)
    return results, model_s, None


class ChunkEncoderActor:
    """GPU actor body: builds the backbone once, then encodes chunk after chunk on its GPU."""

    def __init__(self, settings: ChunkSettings):
        self.settings = settings
        try:
            self.encode, self.error = _worker_encoder(settings), None
        except Exception as err:  # noqa: BLE001  (reported by ``run``: an actor that raises here just dies)
            self.encode, self.error = None, _setup_error(settings, err)

    def run(self, chunk: Chunk, chunk_runner: ChunkRunner) -> tuple[list, float, str | None]:
        """Same answer as ``run_chunk_task``."""
        if self.error is not None:
            return [], 0.0, self.error
        results, model_s = chunk_runner(self.encode, chunk, self.settings.batch_frames)
        return results, model_s, None
