"""The local extraction pipeline: decoder processes -> bounded queue -> fixed-size backbone batches.

``decoded_clips(jobs, workers)`` yields ``DecodedClip`` answers as decoder
processes finish them. The result queue holds at most ``queue_clips`` decoded
clips, so memory stays bounded however many clips there are, and the consumer
(the backbone) never waits longer than the decoders need. A decoder process that
dies (a crash inside FFmpeg) costs only the clip it was decoding: the clip is
reported as failed and a fresh process takes its place.

``FeatureBatcher`` cuts the stream of frames into batches of exactly
``batch_frames`` frames (the last one padded), so a graph-compiled or
interpreter backbone sees one input shape, and hands back each clip's (T, D)
features as soon as its last frame is encoded; a clip of R regions per sampled
frame (a stream view such as ``tiles``) gives T * R frames and comes back as
(T, R * D), its regions side by side in the order they were given.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Generic, TypeVar

import numpy as np

from nexara_lib.features.clip_jobs import ClipJob, DecodedClip, decode_job
from nexara_lib.lifeline import watch_parent

# Niceness added to decoder processes (see ``_decoder_main``): the lowest priority. Measured on 2 cores
# with the TFLite backbone: 19 gives 9.4 s for 59 clips, 5 gives 10.0 s (the model is the costly stage).
DECODER_NICENESS = 19
# Seconds between liveness checks of the decoder processes while waiting for a result.
POLL_S = 0.5


def _decoder_main(tasks, results, current, wid: int, parent_pid: int) -> None:
    """Decoder process: decode jobs from ``tasks`` until the None sentinel, answers to ``results``.

    It ends by itself if its parent (the kernel or ``nexara extract``) is killed: see ``lifeline``.
    """
    import cv2

    watch_parent(parent_pid)

    from nexara_lib.video.reader import set_decoder_threads

    cv2.setNumThreads(1)  # one process per core: OpenCV's own thread pool would oversubscribe
    set_decoder_threads(1)
    # Below the backbone's priority: the model (the costly stage) never waits for a core, and
    # decoding fills the time the model leaves free.
    os.nice(DECODER_NICENESS)
    while True:
        item = tasks.get()
        if item is None:
            return
        index, job = item
        current[wid] = index
        answer = decode_job(job)
        results.put((index, answer))
        current[wid] = -1


@contextlib.contextmanager
def _main_module_hidden():
    """Start processes without re-running the caller's script in them.

    A spawned process normally imports the parent's ``__main__`` (a script without an
    ``if __name__ == "__main__"`` guard would then start extracting again). The decoders
    need only this library, so the main module's file and spec are hidden while they start.
    """
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    try:
        for k in saved:
            if k == "__file__":
                delattr(main, k)
            else:
                setattr(main, k, None)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


class DecoderPoolError(RuntimeError):
    """Decoder processes cannot run at all (they die before decoding anything)."""


class DecoderPool:
    """Decoder processes over ``jobs``; iterate to get ``(index, DecodedClip)`` as they finish.

    Args:
        jobs: clips to decode.
        workers: decoder processes (>= 1).
        queue_clips: decoded clips held at most between decoders and consumer.
    Attributes:
        wait_s: seconds the consumer spent waiting for a decoded clip.
    """

    def __init__(self, jobs: list[ClipJob], workers: int, queue_clips: int):
        self.jobs = jobs
        self.ctx = mp.get_context("spawn")  # fork after TensorFlow started threads is unsafe
        self.tasks = self.ctx.Queue()
        self.results = self.ctx.Queue(maxsize=max(1, queue_clips))
        self.current = self.ctx.Array("q", [-1] * workers, lock=False)
        self.procs: list = [None] * workers
        self.wait_s = 0.0
        for item in enumerate(jobs):
            self.tasks.put(item)
        for _ in range(workers):
            self.tasks.put(None)
        for wid in range(workers):
            self._start(wid)

    def _start(self, wid: int) -> None:
        self.current[wid] = -1
        proc = self.ctx.Process(
            target=_decoder_main,
            args=(self.tasks, self.results, self.current, wid, os.getpid()),
            daemon=True,
            name=f"nexara-decoder-{wid}",
        )
        with _main_module_hidden():
            proc.start()
        self.procs[wid] = proc

    def _crashed(self, remaining: set[int]) -> list[tuple[int, DecodedClip]]:
        """Answers for the clips whose decoder process died; restarts those processes."""
        lost = []
        for wid, proc in enumerate(self.procs):
            if proc.exitcode is None or proc.exitcode == 0:
                continue
            index = int(self.current[wid])
            if index < 0:  # died holding no clip: it cannot start, and restarting would loop forever
                raise DecoderPoolError(
                    f"a decoder process exited with code {proc.exitcode} before decoding anything; "
                    "run with workers=0 to decode in this process and see the error"
                )
            if index in remaining:
                job = self.jobs[index]
                reason = f"the decoder process crashed on this clip (exit code {proc.exitcode}); skipped"
                lost.append((index, DecodedClip(job, None, reason, {})))
            self._start(wid)
        return lost

    def __iter__(self) -> Iterator[tuple[int, DecodedClip]]:
        remaining = set(range(len(self.jobs)))
        try:
            while remaining:
                t0 = time.perf_counter()
                try:
                    index, answer = self.results.get(timeout=POLL_S)
                except queue.Empty:
                    self.wait_s += time.perf_counter() - t0
                    for index, answer in self._crashed(remaining):
                        remaining.discard(index)
                        yield index, answer
                    continue
                self.wait_s += time.perf_counter() - t0
                if index in remaining:
                    remaining.discard(index)
                    yield index, answer
        finally:
            self.close()

    def close(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                proc.join(timeout=5)
        self.tasks.cancel_join_thread()
        self.results.cancel_join_thread()


def decoded_clips(jobs: list[ClipJob], workers: int, queue_clips: int, timer: dict) -> Iterable[DecodedClip]:
    """Decoded clips in completion order: in decoder processes (``workers`` >= 1) or here (0).

    ``timer['wait_s']`` is set to the consumer's time waiting on the decoders; in this process
    that is the whole decode time.
    """
    if workers <= 0:
        for job in jobs:
            t0 = time.perf_counter()
            answer = decode_job(job)
            timer["wait_s"] = timer.get("wait_s", 0.0) + time.perf_counter() - t0
            yield answer
        return
    pool = DecoderPool(jobs, min(workers, max(1, len(jobs))), queue_clips)
    for _, answer in pool:
        timer["wait_s"] = pool.wait_s
        yield answer
    timer["wait_s"] = pool.wait_s


K = TypeVar("K", bound=Hashable)  # a clip's key in FeatureBatcher (its job index, its name)


class FeatureBatcher(Generic[K]):
    """Encode clips' frames in batches of exactly ``batch_frames`` frames; ``K`` is the type of a clip's key.

    Args:
        encode: ``frames (B, ...) uint8 -> features (B, D)``.
        batch_frames: frames per backbone call.
    Attributes:
        model_s: seconds spent inside ``encode``; calls: backbone calls.
    """

    def __init__(self, encode: Callable[[np.ndarray], np.ndarray], batch_frames: int):
        self.encode, self.batch_frames = encode, max(1, int(batch_frames))
        self.frames: list[np.ndarray] = []  # frames waiting, in order
        self.owners: list[tuple[K, int, int]] = []  # (clip key, frames, regions per row) in arrival order
        self.done_rows: list[np.ndarray] = []  # encoded rows not yet handed back
        self.model_s = 0.0
        self.calls = 0

    def add(self, key: K, frames: np.ndarray, regions: int = 1) -> list[tuple[K, np.ndarray]]:
        """Queue one clip's frames; returns the clips completed by the batches this filled.

        Args:
            key: the clip's name, handed back with its features.
            frames: (T * regions, ...) the clip's frames, the regions of a sampled frame one after another.
            regions: frames per sampled frame; the clip comes back as (T, regions * D).
        """
        if (
            isinstance(regions, bool)
            or not isinstance(regions, (int, np.integer))
            or regions < 1
            or len(frames) == 0
            or len(frames) % regions
        ):
            raise ValueError(
                f"FeatureBatcher.add({key!r}): {len(frames)} frames are not a positive whole number "
                f"of sampled frames of {regions!r} regions each; give T * regions frames"
            )
        self.frames.extend(frames)
        self.owners.append((key, len(frames), int(regions)))
        out: list[tuple[K, np.ndarray]] = []
        while len(self.frames) >= self.batch_frames:
            out.extend(self._run(self.batch_frames))
        return out

    def flush(self) -> list[tuple[K, np.ndarray]]:
        """Encode whatever is left (one padded batch) and return the completed clips."""
        out: list[tuple[K, np.ndarray]] = []
        while self.frames:
            out.extend(self._run(min(self.batch_frames, len(self.frames))))
        return out

    def _run(self, n: int) -> list[tuple[K, np.ndarray]]:
        batch = np.stack(self.frames[:n])
        del self.frames[:n]
        if n < self.batch_frames:  # keep one input shape: pad with copies of the last frame
            batch = np.concatenate([batch, np.repeat(batch[-1:], self.batch_frames - n, axis=0)])
        t0 = time.perf_counter()
        feats = np.asarray(self.encode(batch), dtype=np.float32)[:n]
        self.model_s += time.perf_counter() - t0
        self.calls += 1
        self.done_rows.extend(feats)
        completed: list[tuple[K, np.ndarray]] = []
        while self.owners and len(self.done_rows) >= self.owners[0][1]:
            key, count, regions = self.owners.pop(0)
            feats = np.stack(self.done_rows[:count])
            completed.append((key, feats.reshape(count // regions, regions * feats.shape[1])))
            del self.done_rows[:count]
        return completed
