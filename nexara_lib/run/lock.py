"""One `nexara run` per run folder: a lock file (``run.lock``) naming the holder's PID, host and start time.

A second run on the same folder refuses at once, naming the holder. A lock whose process is gone (killed,
crashed, machine rebooted) is stale: the next run takes it over and says so, and marks what the dead run
left ``running`` in ``run.json`` as ``interrupted``. The lock file is created with O_EXCL (only one process
can create it); a takeover writes a fresh file and renames it over the stale one, then checks it won.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nexara_lib.io import read_json, write_json_atomic

LOCK_FILE = "run.lock"


class RunLocked(RuntimeError):
    """The run folder is in use by another live `nexara run`."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable or cut short by a crash: nobody can hold it


def _describe(holder: dict) -> str:
    return f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started_at', '?')}"


@contextlib.contextmanager
def run_lock(run_dir: str | Path, log: Callable[[str], Any] = print) -> Iterator[Path]:
    """Hold ``run_dir/run.lock`` while the block runs.

    Raises:
        RunLocked: a live process on this host holds the folder (the message names it and what to do).
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": dt.datetime.now().astimezone().isoformat()}
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        holder = _holder(path)
        same_host = holder.get("host") in (None, me["host"])
        if holder.get("pid") and (not same_host or _alive(int(holder["pid"]))):
            raise RunLocked(
                f"run folder {run_dir} is in use by another `nexara run` ({_describe(holder)}); wait for "
                f"it to finish, or stop it (kill {holder['pid']}) and run again"
            ) from None
        write_json_atomic(path, me)  # stale: take it over, then make sure no other taker won the race
        if _holder(path).get("pid") != me["pid"]:
            raise RunLocked(
                f"run folder {run_dir} was just taken by another `nexara run` ({_describe(_holder(path))})"
            ) from None
        log(
            f"note: took over a stale lock of {run_dir} ({_describe(holder) if holder else 'unreadable'}: "
            "that process is gone)"
        )
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
    try:
        yield path
    finally:
        if _holder(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)


def mark_interrupted(run_json: str | Path, log: Callable[[str], Any] = print) -> dict:
    """A ``run.json`` left ``running`` by a run that is gone (we hold the lock): mark it and its running
    notebooks ``interrupted``, write it back, and return it (``{}`` when there is none)."""
    run = read_json(run_json, {}) or {}
    if run.get("status") != "running":
        return run
    run["status"] = "interrupted"
    for name, entry in (run.get("notebooks") or {}).items():
        if entry.get("status") == "running":
            entry["status"] = "interrupted"
            log(
                f"note: the previous run in this folder stopped during {name} (killed or crashed); "
                "it is marked interrupted"
            )
    write_json_atomic(run_json, run)
    return run
