"""Processes that end with the process that started them.

A run's notebook kernel is started in its own session (Jupyter does that so a Ctrl-C in the terminal
does not reach it), and the kernel starts decoder and probe processes of its own. When the parent is
killed (``kill -9``, the OOM killer, a closed SSH session), nothing tells these processes: they would go
on decoding, writing features and holding memory for hours. ``watch_parent`` starts a daemon thread
that notices the parent is gone (its parent PID changes once it is re-parented) and ends the process:

- a worker (``group=False``) exits at once;
- a kernel (``group=True``) kills its whole process group (itself, its decoders, their resource
  tracker) when it leads one, else its descendants and then itself.

Polling ``os.getppid`` works wherever a process can be re-parented (to PID 1 or to a sub-reaper), needs
no privileges and survives ``exec``-less start methods (spawn, forkserver); a parent-death signal would
fire when the *thread* that started the child ends, which is not what a run means by "parent".
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

# How often a watched process looks at its parent: the most a killed run's children outlive it.
POLL_S = 0.5


def _children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` read from /proc (empty where there is no /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def end_process(group: bool) -> None:
    """End this process now; with ``group``, everything it started too (see the module docstring)."""
    me = os.getpid()
    if group:
        if os.getpgrp() == me:  # leading our own group: one signal reaches every process in it
            os.killpg(me, signal.SIGKILL)
        for pid in _descendants(me):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # already gone
    os._exit(1)


def _watch(parent_pid: int, group: bool, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    end_process(group)


def watch_parent(parent_pid: int | None = None, group: bool = False, poll_s: float = POLL_S) -> threading.Thread:
    """End this process (and with ``group`` what it started) once ``parent_pid`` is no longer its parent.

    Args:
        parent_pid: the parent to outlive never (default: the current parent). A process whose parent is
            already not ``parent_pid`` (it died before the watch started) ends at once.
        group: also kill the processes this one started (for a kernel; workers leave it False).
        poll_s: seconds between looks at the parent.
    """
    parent_pid = os.getppid() if parent_pid is None else int(parent_pid)
    thread = threading.Thread(target=_watch, args=(parent_pid, group, poll_s), name="nexara-lifeline", daemon=True)
    thread.start()
    return thread
