"""Probing every clip in worker processes (``probe_clips``): frames, fps, size, codec, perceptual
hash and SHA-1 per clip.

Probing runs in worker processes with a per-clip timeout, so a file that hangs
or crashes the decoder costs only itself; every file found ends up either in
the manifest or in the unusable list with a reason.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import time
import warnings
from collections import deque

import numpy as np
import pandas as pd

from nexara_lib.audit.links import file_sha1
from nexara_lib.lifeline import watch_parent
from nexara_lib.video.probe import empty_probe, probe_video

# The columns a probe adds to each clip: ``probe_video``'s keys.
PROBE_COLUMNS = tuple(empty_probe())
# Seconds a worker may take to start (import OpenCV) before the pool is given up.
WORKER_START_S = 120.0


def _probe_task(path: str, probe_fn, want_hash: bool) -> dict:
    """Probe (and hash) one clip; never raises, so one odd file cannot end the audit."""
    start = time.perf_counter()
    try:
        info = (probe_fn or probe_video)(path)
    except Exception as err:
        info = {"status": "unusable", "reason": f"probe failed: {type(err).__name__}: {err}"}
    if not isinstance(info, dict):
        info = {"status": "unusable", "reason": f"probe failed: the probe returned {type(info).__name__}, not a dict"}
    if want_hash:
        info["sha1"] = file_sha1(path)
    info["probe_s"] = time.perf_counter() - start
    return info


def _probe_worker(conn, probe_fn, want_hash: bool, parent_pid: int) -> None:
    """Worker process: say it is ready, then probe each (index, path) received until None.

    It ends by itself if its parent is killed (see ``lifeline``), also while stuck in a clip."""
    watch_parent(parent_pid)
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        index, path = task
        conn.send((index, _probe_task(path, probe_fn, want_hash)))


@dataclasses.dataclass
class _Worker:
    process: multiprocessing.Process
    conn: multiprocessing.connection.Connection
    since: float  # start of the process, or of its current task
    ready: bool = False
    task: int | None = None  # index of the clip being probed


class _WorkersCannotStart(RuntimeError):
    """Worker processes die or hang before they can take a clip."""


def _start_worker(context, probe_fn, want_hash: bool) -> _Worker:
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=_probe_worker, args=(child_end, probe_fn, want_hash, os.getpid()), daemon=True, name="nexara-probe"
    )
    process.start()
    child_end.close()
    return _Worker(process, parent_end, time.monotonic())


def _stop_worker(worker: _Worker, kill: bool) -> None:
    """End a worker: politely when idle, by SIGKILL when it is stuck in a clip."""
    if not kill:
        try:
            worker.conn.send(None)
        except OSError:
            kill = True
    if kill:
        worker.process.kill()
    worker.process.join(timeout=5)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.conn.close()


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _drain(worker: _Worker, results: list, on_done) -> bool:
    """Take every message ``worker`` has sent; False when its pipe is closed (the process died)."""
    try:
        while worker.conn.poll():
            index, info = worker.conn.recv()
            if index == "ready":
                worker.ready, worker.since = True, time.monotonic()
            else:
                results[index], worker.task = info, None
                on_done(index)
    except (EOFError, OSError):
        return False
    return True


def _hand_out(pool: list[_Worker], pending: deque, paths: list[str]) -> None:
    """Give each ready, idle worker the next clip."""
    for w in pool:
        if w.ready and w.task is None and pending:
            w.task, w.since = pending.popleft(), time.monotonic()
            try:
                w.conn.send((w.task, paths[w.task]))
            except OSError:  # it died while idle: the clip goes back; the death is seen later
                pending.appendleft(w.task)
                w.task = None


def _wait_for_news(pool: list[_Worker], timeout_s: float | None) -> None:
    """Block until a worker sends something or dies, or until the next deadline passes."""
    limits = [
        w.since + (timeout_s if w.ready and timeout_s is not None else WORKER_START_S)
        for w in pool
        if not w.ready or (w.task is not None and timeout_s is not None)
    ]
    wait_s = max(0.0, min(limits) - time.monotonic()) if limits else None
    multiprocessing.connection.wait([w.conn for w in pool] + [w.process.sentinel for w in pool], wait_s)


def _failure(worker: _Worker, alive: bool, timeout_s: float | None) -> str:
    """Why ``worker`` must be replaced ("" if it is fine); raises if it never started."""
    overdue = time.monotonic() - worker.since
    if not alive:
        worker.process.join(timeout=2)  # its pipe closes a moment before its exit code is known
    if not worker.ready and (not alive or overdue > WORKER_START_S):
        raise _WorkersCannotStart(
            f"a probe worker {'hung' if alive else 'died'} while starting ({_exit_text(worker.process.exitcode)})"
        )
    if not alive:
        return (
            f"the decoder crashed on this file (probe worker {_exit_text(worker.process.exitcode)}); "
            "it is likely corrupt"
        )
    if worker.task is not None and timeout_s is not None and overdue > timeout_s:
        return (
            f"probe timed out after {timeout_s:g} s (the decoder hangs on this file; its worker was "
            "stopped); check the file, or raise probe_timeout_s if it is just very large"
        )
    return ""


def _probe_in_processes(
    paths: list[str], workers: int, timeout_s: float | None, probe_fn, want_hash: bool, results: list, on_done
) -> None:
    """Probe ``paths`` in worker processes, filling ``results`` by index.

    A worker stuck on one clip longer than ``timeout_s`` is killed, the clip is
    recorded as timed out and a fresh worker takes the next clip; a worker that
    crashes (a decoder segfault) costs only its clip.

    Raises:
        _WorkersCannotStart: a worker dies or hangs before it is ready (e.g. in an
            unguarded script that spawn re-runs); ``results`` keeps what was done.
    """
    # spawn: workers start clean, without this process's threads (tqdm, OpenCV's
    # pool) that a fork would copy in an undefined state.
    context = multiprocessing.get_context("spawn")
    pending = deque(range(len(paths)))
    # A slot is None once its worker is stopped with nothing left to hand out (dropped after the sweep).
    pool: list[_Worker | None] = [_start_worker(context, probe_fn, want_hash) for _ in range(min(workers, len(paths)))]
    try:
        while pending or any(w is not None and w.task is not None for w in pool):
            live = [w for w in pool if w is not None]  # the same list as pool here: None slots were dropped
            _hand_out(live, pending, paths)
            _wait_for_news(live, timeout_s)
            for k, w in enumerate(live):
                alive = _drain(w, results, on_done) and w.process.is_alive()
                reason = _failure(w, alive, timeout_s)
                if not reason:
                    continue
                index, spent = w.task, time.monotonic() - w.since
                _stop_worker(w, kill=True)
                if index is not None:
                    results[index] = {"status": "unusable", "reason": reason, "probe_s": spent}
                    on_done(index)
                # Placed here, a replacement cannot be lost if a later worker raises.
                pool[k] = _start_worker(context, probe_fn, want_hash) if pending else None
            pool = [w for w in pool if w is not None]
    finally:
        for slot in pool:
            if slot is not None:
                _stop_worker(slot, kill=slot.task is not None or not slot.process.is_alive())


def _check_probe_options(workers, probe_timeout_s, probe_fn) -> None:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(
            f"probe workers must be an integer >= 0 (0 = probe in this process, no timeout), got {workers!r}"
        )
    if probe_timeout_s is not None and (
        isinstance(probe_timeout_s, bool) or not isinstance(probe_timeout_s, (int, float)) or not probe_timeout_s > 0
    ):
        raise ValueError(
            f"probe_timeout_s must be a positive number of seconds or None (no limit), got {probe_timeout_s!r}"
        )
    if probe_fn is not None:
        if not callable(probe_fn):
            raise ValueError(f"probe_fn must be a function path -> probe dict, got {probe_fn!r}")
        if workers > 0:
            try:
                pickle.dumps(probe_fn)
            except Exception as err:
                raise ValueError(
                    f"probe_fn {probe_fn!r} cannot be sent to worker processes ({err}); use a "
                    "function defined at module level, or workers=0"
                ) from None


def _probe_frame(clips: pd.DataFrame, results: list[dict], want_hash: bool) -> pd.DataFrame:
    """``clips`` with the probe columns (and sha1) from ``results``, with fixed types."""
    defaults = empty_probe()
    out = clips.copy()
    probed = pd.DataFrame(results, index=clips.index)
    for column in (*PROBE_COLUMNS, "sha1") if want_hash else PROBE_COLUMNS:
        default = defaults.get(column, "")
        out[column] = probed[column].fillna(default) if column in probed else default
    for column in ("frames_header", "frames", "width", "height", "bytes"):
        out[column] = out[column].astype(int)
    for column in ("opened", "first_frame_ok", "last_frame_ok"):
        out[column] = out[column].astype(bool)
    for column in ("fps", "duration_s"):
        out[column] = out[column].astype(float)
    return out


def probe_clips(
    clips: pd.DataFrame, workers: int = 2, progress: bool = True, *, probe_timeout_s: float | None = 30.0, probe_fn=None
) -> pd.DataFrame:
    """Probe every clip (opens? frames, fps, duration, size, codec, first/last frame, phash) and hash it.

    Args:
        clips: needs a ``path`` column.
        workers: worker processes probing in parallel; 0 probes in this process
            (no timeout possible there: a hanging decoder would hang the audit).
        progress: show a tqdm progress bar.
        probe_timeout_s: a clip whose probe takes longer is abandoned (its worker
            killed) and listed as unusable; None = no limit.
        probe_fn: replaces ``probe_video`` (path -> dict of ``PROBE_COLUMNS``);
            a module-level function when workers > 0.
    Returns:
        A copy with the ``PROBE_COLUMNS`` and ``sha1`` added. ``attrs`` holds
        probe_seconds, probe_clips_per_s, probe_workers, probe_timeout_s,
        probe_timeouts, probe_crashes and slowest_probes.
    Raises:
        ValueError: no path column or bad options.
    """
    from tqdm.auto import tqdm

    if "path" not in clips:
        raise ValueError("probe_clips: clips has no 'path' column; build it with discover_clips")
    _check_probe_options(workers, probe_timeout_s, probe_fn)
    want_hash = "sha1" not in clips
    paths = [str(p) for p in clips["path"]]
    results: list[dict | None] = [None] * len(paths)
    start = time.perf_counter()
    bar = tqdm(total=len(paths), desc="probing clips", unit="clip", disable=not progress)
    try:
        if workers > 0 and paths:
            try:
                _probe_in_processes(
                    paths, workers, probe_timeout_s, probe_fn, want_hash, results, lambda _: bar.update(1)
                )
            except _WorkersCannotStart as err:
                left = sum(r is None for r in results)
                warnings.warn(
                    f"{err}: probing the remaining {left} clips in this process, without a timeout "
                    "(run the audit from a file with an `if __name__ == '__main__':` guard, or use "
                    "workers=0)",
                    stacklevel=2,
                )
        for index, path in enumerate(paths):
            if results[index] is None:
                results[index] = _probe_task(path, probe_fn, want_hash)
                bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    probed = [r for r in results if r is not None]
    if len(probed) != len(results):  # both loops above fill every slot; a gap would misalign clips and results
        raise RuntimeError(f"{len(results) - len(probed)} clips were never probed")
    out = _probe_frame(clips, probed, want_hash)
    reasons = out["reason"].astype(str)
    names = (
        (out["source"].astype(str) + "/" + out["rel_path"].astype(str))
        if {"source", "rel_path"} <= set(out)
        else out["path"]
    )
    slowest = sorted(zip((r.get("probe_s", 0.0) for r in probed), names, strict=True), key=lambda t: -t[0])[:5]
    out.attrs.update(clips.attrs)
    out.attrs.update(
        {
            "probe_seconds": seconds,
            "probe_clips_per_s": len(paths) / seconds if seconds > 0 else None,
            "probe_workers": workers,
            "probe_timeout_s": probe_timeout_s,
            "probe_timeouts": int(reasons.str.startswith("probe timed out").sum()),
            "probe_crashes": int(reasons.str.startswith("the decoder crashed").sum()),
            "slowest_probes": [{"clip": str(c), "seconds": round(float(s), 3)} for s, c in slowest],
        }
    )
    return out
