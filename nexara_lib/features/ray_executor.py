"""The Ray executor of feature extraction: clips spread over a Ray cluster, features back to the driver.

``ray_results(jobs, ...)`` yields the same items as ``features.local_results``:
``(job, features (T, D) float32 or None, error or None, record)``, one per job,
in completion order. The driver (``extract_features``) writes the cache, so
remote code writes nothing and no shared filesystem is needed.

Design:

- Work unit: a *chunk* of clips (``plan_chunks``), a few backbone batches'
  worth, so per-task overhead stays small next to decoding and encoding, while
  progress stays visible and a lost task costs little.
- On a cluster with GPUs, one actor per GPU (``num_gpus=1``) builds the
  backbone once and runs chunks; otherwise CPU tasks (``num_cpus=1``) run them,
  each worker process keeping its backbone so later tasks on that worker reuse
  it (the worker side is ``features.ray_worker``). Both decode with
  ``clip_jobs.decode_job`` and encode with ``local_executor.FeatureBatcher``,
  exactly like the local executor: features are per frame, so the numbers do
  not depend on which clips share a batch.
- At most ``workers`` chunks are in flight (0 = one per CPU of the cluster; GPU
  actors, at most that many, take one chunk each at a time) and
  results are fetched as chunks finish (``ray.wait``): memory stays bounded and
  the driver writes (so a killed run resumes) as it goes.
- A chunk whose task fails (an exception, a worker that died) is run again one
  clip per task, so only the clip(s) that fail on their own are lost; those are
  yielded as failed with the reason ("Ray task failed: ..."), the run goes on.
  A GPU actor that died is replaced; it runs one chunk at a time, so a crash
  takes no queued chunk with it. Two things mean the workers are broken rather
  than a clip, and stop the run with a RuntimeError instead of recording every
  clip as failed: a backbone that cannot be built on a worker, and
  ``FAILURES_IN_A_ROW_LIMIT`` task failures with no chunk finishing between.
- Connection: an initialised Ray is used as is; otherwise ``address`` (or the
  RAY_ADDRESS environment variable) is joined, shipping this package to the
  cluster (``runtime_env`` ``py_modules``), else a local instance is started.
  Only an instance started here is shut down at the end.

``ray`` is imported inside functions: the library imports without it.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from nexara_lib.features.backbones import PRETRAINED_DIR_ENV
from nexara_lib.features.clip_jobs import ClipJob
from nexara_lib.features.ray_worker import (
    Chunk,
    ChunkEncoderActor,
    ChunkRunner,
    ChunkSettings,
    encode_chunk,
    run_chunk_task,
)

# Backbone batches per chunk: enough that scheduling a task and fetching the cached backbone are small
# next to the work, few enough that progress shows and a failed task loses little.
CHUNK_BATCHES = 4
# Seconds to wait for a TCP answer from a Ray address before calling it unreachable (ray.init itself
# retries for minutes against an address nobody listens on).
CONNECT_TIMEOUT_S = 10.0
# Ray's own re-runs of a task whose worker process died (a lost node); exceptions are not re-run by Ray.
TASK_RETRIES = 1
# Task failures in a row (no chunk finishing in between) that mean every worker is broken, not one clip:
# the run stops instead of recording every clip as failed. At least twice the chunks in flight.
FAILURES_IN_A_ROW_LIMIT = 8
# Characters of a failure reason kept (remote tracebacks are long; the first line says what happened).
REASON_CHARS = 300

# Ray errors that mean the process running the task died, rather than the task raising.
PROCESS_DEATHS = (
    "WorkerCrashedError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "OutOfMemoryError",
    "NodeDiedError",
)
PROCESS_DEATH_HINT = "the worker process died on this clip (a crash in the decoder or backbone, or out of memory)"


def plan_chunks(jobs: list[ClipJob], batch_frames: int, in_flight: int, chunk_clips: int = 0) -> list[Chunk]:
    """Cut ``jobs`` into chunks of consecutive clips.

    Args:
        jobs: clips to extract.
        batch_frames: frames per backbone call.
        in_flight: chunks run at once; small job lists are spread so every slot gets work.
        chunk_clips: clips per chunk; 0 = ``CHUNK_BATCHES`` backbone batches' worth, fewer when
            that would leave slots idle.
    Returns:
        Lists of (job index, job) pairs covering every job once, in order.
    """
    if not chunk_clips:
        clips_per_batch = max(1, batch_frames // max(1, jobs[0].encoded_frames)) if jobs else 1
        chunk_clips = min(clips_per_batch * CHUNK_BATCHES, math.ceil(len(jobs) / max(1, in_flight)))
    chunk_clips = max(1, int(chunk_clips))
    indexed = list(enumerate(jobs))
    return [indexed[i : i + chunk_clips] for i in range(0, len(indexed), chunk_clips)]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "executor 'ray' needs the ray package, which is not installed in this environment; "
            "install the version pinned in requirements.txt (pip install 'ray==2.60.0') "
            "or use executor 'local'"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast, with a clear message, when nothing answers at a host:port Ray address."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():  # 'auto', 'local' or a form ray.init judges itself
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise RuntimeError(
            f"cannot reach the Ray cluster at {address!r} ({err}); check that its head node runs "
            "(`ray start --head` prints the address to join) and that host and port are right, "
            "or leave ray_address empty and RAY_ADDRESS unset to start a local Ray instance"
        ) from None


def _runtime_env() -> dict:
    """What a remote cluster's workers need: this library, and where pretrained files are."""
    env: dict[str, object] = {"py_modules": [str(Path(__file__).resolve().parents[1])]}
    if os.environ.get(PRETRAINED_DIR_ENV):
        env["env_vars"] = {PRETRAINED_DIR_ENV: os.environ[PRETRAINED_DIR_ENV]}
    return env


def connect_ray(address: str | None, workers: int):
    """Use the initialised Ray, join ``address`` (or RAY_ADDRESS), or start a local instance.

    Args:
        address: 'host:port', 'ray://host:port' or 'auto'; None/'' = RAY_ADDRESS, else local.
        workers: CPUs of a local instance (0 = all of this machine's).
    Returns:
        (the ray module, True when this call started or joined Ray and must shut it down).
    Raises:
        RuntimeError: ray is not installed, or the cluster cannot be reached.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    if address:
        _check_reachable(address)
    try:
        if address:
            # Workers import this package from the driver's copy: no install or shared filesystem needed.
            ray.init(address=address, runtime_env=_runtime_env(), **quiet)
        else:
            ray.init(num_cpus=workers or None, include_dashboard=False, **quiet)
    except Exception as err:  # noqa: BLE001  (ray.init raises many kinds; all mean the same to the user)
        raise _init_error(address, err) from None
    return ray, True


def _init_error(address: str | None, err: Exception) -> RuntimeError:
    """A one-paragraph error for a failed ``ray.init``: what failed, its root cause, what to check."""
    where = f"join the Ray cluster at {address!r}" if address else "start a local Ray instance"
    root: BaseException = err
    for _ in range(10):  # ray.init wraps the real reason (bounded: a chain could loop)
        cause = root.__cause__ or root.__context__
        if cause is None:
            break
        root = cause
    reason = _one_line(err) if root is err else f"{_one_line(err)} (cause: {_one_line(root)})"
    if "AuthenticationError" in f"{type(root).__name__} {root}":
        hint = (
            "the cluster uses token authentication: set RAY_AUTH_MODE=token and give this process "
            "the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
        )
    elif address:
        hint = "check the address and that the cluster runs the same Ray and Python versions as this process"
    else:
        hint = "check free memory and /tmp space, or use executor 'local'"
    return RuntimeError(f"could not {where}: {reason}; {hint}")


def _failure_reason(err: BaseException) -> str:
    """What a clip's failure record says when its Ray task failed."""
    if type(err).__name__ in PROCESS_DEATHS:
        return f"Ray task failed: {PROCESS_DEATH_HINT} ({_one_line(err)})"[:REASON_CHARS]
    return f"Ray task failed: {_one_line(err)}"


def _one_line(err: BaseException) -> str:
    """A short readable reason for a failed Ray task (its cause, not the remote traceback)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and "Traceback (most recent call last)" in lines[0]:  # a message quoting a traceback: its last line
        lines = [f"{lines[0].split('Traceback')[0]}{lines[-1]}"]
    text = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text[:REASON_CHARS]


class _TaskPool:
    """Submits chunks as CPU tasks (``num_cpus=1``)."""

    def __init__(self, ray, settings: ChunkSettings, chunk_runner: ChunkRunner):
        self.ray, self.settings, self.chunk_runner = ray, settings, chunk_runner
        self.remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(run_chunk_task)

    def submit(self, chunk: Chunk):
        return self.remote.remote(self.settings, chunk, self.chunk_runner)

    def finished(self, ref, error: BaseException | None) -> None:
        pass  # a task's worker that died is replaced by Ray

    def close(self) -> None:
        pass


class _ActorPool:
    """Submits chunks to GPU actors, each to the least busy one; an actor that died is replaced."""

    def __init__(self, ray, settings: ChunkSettings, chunk_runner: ChunkRunner, actors: int, gpus_per_actor: float):
        self.ray, self.settings, self.chunk_runner = ray, settings, chunk_runner
        # No Ray restarts: the pool replaces a dead actor itself, so one that dies while building its backbone
        # shows up as failed chunks (and stops the run, see FAILURES_IN_A_ROW_LIMIT) instead of restarting forever.
        self.actor_cls = ray.remote(num_gpus=gpus_per_actor, num_cpus=1, max_restarts=0)(ChunkEncoderActor)
        self.actors = [self.actor_cls.remote(settings) for _ in range(actors)]
        self.load = [0] * actors
        self.owner: dict = {}

    def submit(self, chunk: Chunk):
        which = self.load.index(min(self.load))
        ref = self.actors[which].run.remote(chunk, self.chunk_runner)
        self.load[which] += 1
        self.owner[ref] = which
        return ref

    def finished(self, ref, error: BaseException | None) -> None:
        which = self.owner.pop(ref)
        self.load[which] -= 1
        if isinstance(error, self.ray.exceptions.RayActorError):  # its process died (a crash, out of memory)
            self._kill(self.actors[which])
            self.actors[which] = self.actor_cls.remote(self.settings)

    def close(self) -> None:
        for actor in self.actors:  # they hold GPU memory: gone with the run
            self._kill(actor)

    def _kill(self, actor) -> None:
        try:
            self.ray.kill(actor)
        except Exception:  # noqa: BLE001  (already dead)
            pass


def _cluster_plan(ray, workers: int, use_gpus: bool | None) -> tuple[int, int, float]:
    """(chunks in flight, GPU actors (0 = CPU tasks), GPUs per actor) for this cluster."""
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    in_flight = int(workers) or max(1, int(resources.get("CPU", 1)))
    if use_gpus is False or (use_gpus is None and gpus <= 0):
        return in_flight, 0, 0.0
    if gpus <= 0:
        raise ValueError(
            "ray_results: use_gpus=True but the Ray cluster has no GPUs; leave use_gpus at None to pick CPU tasks there"
        )
    # One chunk per actor at a time: a chunk queued behind one that kills the actor would be lost with it.
    actors = max(1, min(int(gpus), in_flight))
    return actors, actors, min(1.0, gpus)


def ray_results(
    jobs: list[ClipJob],
    *,
    backbone: str,
    weights: str,
    size: int,
    batch_frames: int,
    workers: int,
    mixed_precision: str,
    address: str | None,
    timer: dict,
    chunk_clips: int = 0,
    use_gpus: bool | None = None,
    chunk_runner: ChunkRunner = encode_chunk,
) -> Iterator[tuple]:
    """The Ray executor: extract ``jobs`` on a Ray cluster, yielding results as chunks finish.

    Args:
        jobs: clips to extract (``features._jobs``).
        backbone, weights, size, mixed_precision: the encoder every worker builds.
        batch_frames: frames per backbone call.
        workers: chunks in flight at most (0 = one per CPU of the cluster); also the CPUs of a
            local instance started here.
        address: Ray cluster to join (None: RAY_ADDRESS, else a local instance).
        timer: gets ``model_s`` (seconds inside the backbone, summed over workers) and ``wait_s``
            (seconds this process waited on Ray).
        chunk_clips: clips per task (0 = ``plan_chunks``'s choice).
        use_gpus: GPU actors (True), CPU tasks (False) or actors when the cluster has GPUs (None).
        chunk_runner: what a worker runs on a chunk with its encoder (``encode_chunk``; tests swap it).
    Yields:
        (job, features (T, D) float32 or None, error or None, record), once per job.
    Raises:
        RuntimeError: ray missing, cluster unreachable, a worker cannot build the backbone, or tasks
            keep failing everywhere (``FAILURES_IN_A_ROW_LIMIT``).
        ValueError: use_gpus=True on a cluster without GPUs.
    """
    if not jobs:
        return
    ray, started = connect_ray(address, workers)
    pool = None
    pending: dict = {}
    try:
        in_flight, actors, gpus_per_actor = _cluster_plan(ray, workers, use_gpus)
        queue = collections.deque(plan_chunks(jobs, batch_frames, in_flight, chunk_clips))
        settings = ChunkSettings(backbone, weights, int(size), mixed_precision, int(batch_frames))
        pool = (
            _ActorPool(ray, settings, chunk_runner, min(actors, len(queue)), gpus_per_actor)
            if actors
            else _TaskPool(ray, settings, chunk_runner)
        )
        timer.setdefault("model_s", 0.0)
        timer.setdefault("wait_s", 0.0)
        failures_in_a_row = 0
        while queue or pending:
            _fill(pool, queue, pending, in_flight)
            chunk, answer = _next_finished(ray, pool, pending, timer)
            failures_in_a_row = failures_in_a_row + 1 if isinstance(answer, BaseException) else 0
            _check_failure_streak(failures_in_a_row, in_flight, answer)
            _fill(pool, queue, pending, in_flight)  # keep the cluster busy while the driver writes
            yield from _chunk_items(jobs, chunk, answer, queue, timer)
    finally:
        _stop(ray, pool, pending, started)


def _fill(pool, queue: collections.deque, pending: dict, in_flight: int) -> None:
    while queue and len(pending) < in_flight:
        chunk = queue.popleft()
        pending[pool.submit(chunk)] = chunk


def _next_finished(ray, pool, pending: dict, timer: dict) -> tuple[Chunk, tuple | BaseException]:
    """The next chunk to finish and its answer (or the Ray error that ended its task)."""
    t0 = time.perf_counter()
    try:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        chunk = pending.pop(ref)
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError as err:
            answer = err
        pool.finished(ref, answer if isinstance(answer, BaseException) else None)
        return chunk, answer
    finally:
        timer["wait_s"] += time.perf_counter() - t0


def _check_failure_streak(failures_in_a_row: int, in_flight: int, answer) -> None:
    """Stop the run when tasks keep failing with no chunk finishing: the workers are broken, not a clip."""
    if failures_in_a_row >= max(FAILURES_IN_A_ROW_LIMIT, 2 * in_flight):
        raise RuntimeError(
            f"{failures_in_a_row} Ray tasks failed in a row without any clip finishing "
            f"(last: {_failure_reason(answer)}); every worker seems broken, not one clip: check the "
            "worker logs (`ray logs`, or /tmp/ray/session_latest/logs on the nodes); clips already "
            "reported failed are retried with retry_failed=True"
        )


def _chunk_items(jobs: list[ClipJob], chunk: Chunk, answer, queue: collections.deque, timer: dict):
    """Yield a finished chunk's results; a failed task's clips go back one per chunk, or fail alone."""
    if isinstance(answer, BaseException):
        if len(chunk) > 1:  # find out which clip(s) fail on their own
            queue.extendleft([item] for item in reversed(chunk))
            return
        index, job = chunk[0]
        yield jobs[index], None, _failure_reason(answer), {}
        return
    results, model_s, setup_error = answer
    if setup_error is not None:
        raise RuntimeError(
            f"{setup_error}; check that the Ray workers have the packages this backbone needs "
            "and can read its weights (a weights file must exist at the same path on every node)"
        )
    timer["model_s"] += model_s
    for index, feats, error, record in results:
        yield jobs[index], feats, error, record


def _stop(ray, pool, pending: dict, started: bool) -> None:
    """Cancel what still runs, kill the actors, and shut down a Ray instance this call started."""
    for ref in pending:
        try:
            ray.cancel(ref)
        except Exception:  # noqa: BLE001  (already finished or not cancellable: nothing to free)
            pass
    if pool is not None:
        pool.close()
    if started:
        ray.shutdown()
