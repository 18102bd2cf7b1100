"""The units of a recipe study and where they train: in this process, in worker processes, or on Ray.

A unit is one (configuration, seed, fold): it trains with ``train_sequence_model`` on the fold's
``fit`` clips, early-stops on its inner validation and is scored on the fold's held-out clips. What
it returns (``train_unit``) is what ``unit.json`` stores: metrics inputs and predictions, no model.

Executors (``study.run_units`` picks one by ``StudyExecution``: ``study_executor``, ``study_workers``):

- in this process (``study_workers: 0``), one unit after another in the order planned;
- ``study_workers: N``: N worker processes of the standard library's ``ProcessPoolExecutor``
  (spawned: the notebook's TensorFlow is never forked). Each loads the development pools once, from
  ``.npy`` files memory-mapped read-only, so no unit carries the arrays;
- ``study_executor: ray``: one Ray task per unit (``study_ray``).

Outside this process every unit trains on ``UNIT_THREADS`` TensorFlow and BLAS threads, whatever
the executor and the number of workers: TensorFlow's thread count changes the order of float
reductions, hence the numbers (measured: 4 or 8 threads move a hybrid unit's probabilities by up to
1e-5), so a fixed count keeps results identical between local workers and Ray, any number of each.
The longest units are handed out first, so the last ones to finish are short. Results come back in
completion order; the caller writes ``unit.json`` (a Ray worker may run on a machine that cannot see
the run folder). A failing unit raises ``StudyUnitError`` naming it, after the other units were
stopped (their checkpoints let a rerun continue them).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from nexara_lib.config import SCHEMA
from nexara_lib.io import read_json, write_json_atomic
from nexara_lib.training.folds import Fold
from nexara_lib.training.models import model_fit_kind
from nexara_lib.training.train import predict_proba, train_sequence_model

# TensorFlow intra-/inter-op and BLAS threads of a unit trained outside the notebook's process: fixed, so the
# numbers do not depend on how many workers share the machine (one unit per core is the efficient layout).
UNIT_THREADS = 1
RESUME_HINT = (
    "finished units are kept: run the study again to continue (units that were running resume from their checkpoints)"
)


@dataclasses.dataclass(frozen=True)
class StudyExecution:
    """Where the units of a study train (parameters ``study_executor``, ``study_workers``,
    ``study_gpus_per_unit``, ``ray_address``; defaults from the schema)."""

    executor: str = SCHEMA["study_executor"].default
    workers: int = SCHEMA["study_workers"].default
    gpus_per_unit: float | str = SCHEMA["study_gpus_per_unit"].default
    ray_address: str = SCHEMA["ray_address"].default

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> StudyExecution:
        return cls(
            params["study_executor"], params["study_workers"], params["study_gpus_per_unit"], params["ray_address"]
        )


@dataclasses.dataclass(frozen=True)
class UnitData:
    """What a unit reads of its development pool: features, labels and clip ids."""

    x: np.ndarray
    y: np.ndarray
    clip_ids: list


@dataclasses.dataclass(frozen=True)
class UnitJob:
    """One (configuration, seed, fold) unit to train: on which pool, with what, and where."""

    pool: str  # key of its development pool in the ``pools`` mapping given to ``run_units``
    config: str
    seed: int
    fold: Fold
    cfg: Mapping[str, Any]
    unit_dir: str
    fingerprint: str
    label: str  # how progress lines and errors name it: '<config> seed <s> <fold>'

    def cost(self) -> float:
        """A rough relative training time, to hand out the longest units first."""
        if model_fit_kind(self.cfg["model"]) == "closed_form":
            return 1.0
        per_epoch = 1.0 if str(self.cfg["model"]).startswith("pooled") else 10.0  # no recurrent layers
        return 10.0 + per_epoch * float(self.cfg["epochs"]) * len(self.fold.fit)


class StudyUnitError(RuntimeError):
    """A unit of the study failed; the message names its configuration, seed and fold."""


def unit_failed(job: UnitJob, reason: str) -> StudyUnitError:
    return StudyUnitError(f"study unit {job.label} failed: {reason}. The study stopped; {RESUME_HINT}")


def _reason(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def train_unit(data: UnitData, job: UnitJob) -> dict:
    """Train one unit and return what ``unit.json`` stores (held-out predictions, no model).

    ``cpu_seconds`` is this process's CPU time while training the unit (every thread of it).
    """
    import tensorflow as tf

    fold, unit_dir = job.fold, Path(job.unit_dir)
    quiet = logging.getLogger("nexara.training")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)  # dozens of units: their per-epoch gap warnings would bury the report
    cpu = time.process_time()
    try:
        result = train_sequence_model(
            data.x[fold.fit],
            data.y[fold.fit],
            data.x[fold.inner_val],
            data.y[fold.inner_val],
            job.cfg,
            unit_dir,
            seed=job.seed,
            verbose=0,
        )
    finally:
        quiet.setLevel(level)
    prob = predict_proba(result["model"], data.x[fold.evaluate])
    (unit_dir / "model.keras").unlink(missing_ok=True)  # units keep metrics and predictions, not 30 models
    return {
        "fingerprint": job.fingerprint,
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "stop_reason": result["stop_reason"],
        "seconds": result["timings"]["total_seconds"],
        "seconds_per_epoch": result["timings"]["seconds_per_epoch"],
        "cpu_seconds": time.process_time() - cpu,
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),  # 0: TensorFlow's default, one per core
        "clip_ids": [data.clip_ids[i] for i in fold.evaluate],
        "y": np.asarray(data.y)[fold.evaluate].tolist(),
        "prob": prob.tolist(),
    }


def pin_threads(threads: int = UNIT_THREADS) -> None:
    """Make this (worker) process compute on ``threads`` TensorFlow and BLAS threads, and let processes
    share a GPU (memory growth). Call before TensorFlow computes; later calls only check."""
    import tensorflow as tf
    from threadpoolctl import threadpool_limits

    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already runs in this process: fine if it runs as asked
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            raise RuntimeError(
                f"this worker process already runs TensorFlow with other thread settings; a study unit needs "
                f"{threads} thread(s) per unit so that results do not depend on the executor"
            ) from None
    threadpool_limits(threads)  # scikit-learn's solver (pooled_linear) and NumPy


# --- worker processes on this machine ---------------------------------------------------------

_POOLS: dict[str, UnitData] = {}  # a worker process's development pools, loaded once


def save_pools(pools: Mapping[str, Any], folder: Path) -> None:
    """Write each pool's arrays once, for the workers to memory-map."""
    for i, (key, pool) in enumerate(pools.items()):
        np.save(folder / f"{i}_x.npy", np.ascontiguousarray(pool.x))
        np.save(folder / f"{i}_y.npy", np.asarray(pool.y))
        write_json_atomic(folder / f"{i}.json", {"key": key, "clip_ids": [str(c) for c in pool.clip_ids]})


def _load_pools(folder: Path) -> dict[str, UnitData]:
    pools = {}
    for meta_path in sorted(folder.glob("*.json")):
        meta, i = read_json(meta_path), meta_path.stem
        x = np.load(folder / f"{i}_x.npy", mmap_mode="r")
        pools[meta["key"]] = UnitData(x, np.load(folder / f"{i}_y.npy"), meta["clip_ids"])
    return pools


def _exit_with_parent() -> None:
    """End this worker when the process that started it dies (even by kill -9): an orphan would go on
    training a unit that the next run trains too."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(pool_dir: str, threads: int) -> None:
    _exit_with_parent()
    pin_threads(threads)
    _POOLS.update(_load_pools(Path(pool_dir)))


def _train_in_worker(job: UnitJob) -> dict:
    return train_unit(_POOLS[job.pool], job)


def worker_results(jobs: list[UnitJob], pools: Mapping[str, Any], workers: int) -> Iterator[tuple[UnitJob, dict]]:
    """Train ``jobs`` in ``workers`` spawned processes, handed out in the order given; yield them as they finish."""
    with tempfile.TemporaryDirectory(prefix="nexara-study-pools-") as pool_dir:
        save_pools({key: pools[key] for key in dict.fromkeys(j.pool for j in jobs)}, Path(pool_dir))
        processes = min(workers, len(jobs))
        executor = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(pool_dir, UNIT_THREADS),
        )
        futures: dict[Future, UnitJob] = {}
        try:
            futures.update((executor.submit(_train_in_worker, job), job) for job in jobs)
            unfinished = list(futures)  # handed out in this order, so the first ones are in flight
            while unfinished:
                finished, _ = wait(unfinished, return_when=FIRST_COMPLETED)
                in_flight = [futures[f].label for f in unfinished[:processes]]
                unfinished = [f for f in unfinished if f not in finished]
                for future in sorted(finished, key=lambda f: f.exception() is not None):  # results first
                    yield futures[future], _outcome(future, futures[future], in_flight)
        finally:
            _stop(executor)


def _outcome(future: Future, job: UnitJob, in_flight: list[str]) -> dict:
    try:
        return future.result()
    except BrokenProcessPool:
        raise StudyUnitError(
            f"a study worker process died (killed, or out of memory) while training {', '.join(in_flight)}. "
            f"The study stopped; {RESUME_HINT}"
        ) from None
    except Exception as err:  # noqa: BLE001  (any error of a unit stops the study, named)
        raise unit_failed(job, _reason(err)) from err


def _stop(executor: ProcessPoolExecutor) -> None:
    """Cancel the units not started and end the workers (at once: a failure or an interrupt stops the study)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())  # terminate_workers() from 3.14
    for process in processes:
        if process.is_alive():
            process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)
    for process in processes:
        process.join(timeout=10)


# --- any executor ------------------------------------------------------------------------------


def longest_first(jobs: list[UnitJob]) -> list[UnitJob]:
    return sorted(jobs, key=lambda j: -j.cost())  # stable: planned order among equals


def in_process_results(jobs: list[UnitJob], pools: Mapping[str, Any]) -> Iterator[tuple[UnitJob, dict]]:
    """Train ``jobs`` one after another in this process, in the order given."""
    for job in jobs:
        try:
            result = train_unit(pools[job.pool], job)
        except Exception as err:  # noqa: BLE001  (any error of a unit stops the study, named)
            raise unit_failed(job, _reason(err)) from err
        yield job, result
