"""The Ray executor of the recipe study: one Ray task per unit, results back to the driver.

- Connection: as extraction's (``features.ray_executor.connect_ray``): an initialised Ray is used as
  is, else ``ray_address`` (or RAY_ADDRESS) is joined, shipping this package, else a local instance
  with ``study_workers`` CPUs (0 = all) is started (and shut down at the end).
- Each development pool goes into the object store once (``ray.put``); a task gets a reference, so
  workers on one node share one read-only copy instead of a pickle per unit.
- A task asks for ``UNIT_THREADS`` CPU(s), the threads it trains on (as local workers), and
  ``study_gpus_per_unit`` GPUs ('auto': 1 when the cluster has GPUs, else 0). Tasks run in their own
  worker processes (a runtime environment of their own), so a worker whose TensorFlow was started
  with other thread settings is never reused.
- At most ``study_workers`` units are in flight (0 = one per CPU of the cluster); the longest go first.
- The driver writes ``unit.json``: a node need not see the run folder. A task trains in the unit's
  folder when its node can write there (one machine, or a shared filesystem: an interrupted unit then
  resumes from its checkpoint), else in a temporary folder.
- A task whose worker process died is run again once by Ray (``TASK_RETRIES``); a unit that raises,
  or dies twice, stops the study: the other tasks are cancelled and ``StudyUnitError`` names the unit.
"""

from __future__ import annotations

import collections
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nexara_lib.features.ray_executor import TASK_RETRIES, connect_ray
from nexara_lib.training.study_units import (
    UNIT_THREADS,
    StudyExecution,
    UnitData,
    UnitJob,
    pin_threads,
    train_unit,
    unit_failed,
)

THREAD_ENV = {  # read by TensorFlow and BLAS when the worker process starts them
    "TF_NUM_INTRAOP_THREADS": str(UNIT_THREADS),
    "TF_NUM_INTEROP_THREADS": str(UNIT_THREADS),
    "OMP_NUM_THREADS": str(UNIT_THREADS),
    "OPENBLAS_NUM_THREADS": str(UNIT_THREADS),
}


def gpus_per_unit(setting: float | str, resources: Mapping[str, float]) -> float:
    """The GPU share each unit asks for: 'auto' = 1 when the cluster has GPUs, else 0."""
    gpus = float(resources.get("GPU", 0))
    if setting == "auto":
        return 1.0 if gpus > 0 else 0.0
    share = float(setting)
    if share > 0 and gpus <= 0:
        raise ValueError(
            f"study_gpus_per_unit is {share:g} but the Ray cluster has no GPUs: the units would wait forever; "
            "set study_gpus_per_unit: auto (or 0)"
        )
    if share > max(gpus, 1.0):
        raise ValueError(f"study_gpus_per_unit is {share:g} but the Ray cluster has {gpus:g} GPUs in all")
    return share


def train_unit_task(data: UnitData, job: UnitJob) -> dict:
    """A Ray task: pin the threads, train the unit (in its folder if this node can write there)."""
    pin_threads(UNIT_THREADS)
    try:
        Path(job.unit_dir).mkdir(parents=True, exist_ok=True)
    except OSError:  # a node that cannot see the run folder: train in a folder of its own
        scratch = tempfile.mkdtemp(prefix="nexara-unit-")
        try:
            return train_unit(data, dataclasses.replace(job, unit_dir=scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return train_unit(data, job)


def _reason(err: BaseException) -> str:
    cause = getattr(err, "cause", None)  # a task's own exception, unwrapped from RayTaskError
    err = cause if isinstance(cause, BaseException) else err
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def ray_unit_results(
    jobs: list[UnitJob], pools: Mapping[str, Any], execution: StudyExecution
) -> Iterator[tuple[UnitJob, dict]]:
    """Train ``jobs`` as Ray tasks (in this order, at most the planned number at once); yield
    ``(job, unit record)`` as each finishes. Raises ``StudyUnitError`` on a failing unit."""
    ray, started = connect_ray(execution.ray_address, execution.workers)
    pending: dict = {}
    try:
        resources = ray.cluster_resources()
        share = gpus_per_unit(execution.gpus_per_unit, resources)
        in_flight = execution.workers or max(1, int(resources.get("CPU", 1)) // UNIT_THREADS)
        refs = {
            key: ray.put(UnitData(pools[key].x, pools[key].y, list(pools[key].clip_ids)))
            for key in dict.fromkeys(j.pool for j in jobs)
        }
        remote = ray.remote(
            num_cpus=UNIT_THREADS, num_gpus=share, max_retries=TASK_RETRIES, runtime_env={"env_vars": THREAD_ENV}
        )(train_unit_task)
        queue = collections.deque(jobs)
        while queue or pending:
            while queue and len(pending) < in_flight:
                job = queue.popleft()
                pending[remote.remote(refs[job.pool], job)] = job
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as err:
                raise unit_failed(job, _reason(err)) from None
            yield job, result
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)  # ends the worker processes still training
            except Exception:  # noqa: BLE001  (already finished: nothing to stop)
                pass
        if started:
            ray.shutdown()
