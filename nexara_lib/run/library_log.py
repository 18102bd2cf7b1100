"""The command line's terminal shows the product's own lines; what the libraries print goes to a log file.

OpenCV (``[ WARN:0@8.7] global cap.cpp:212 ...``), FFmpeg (``[tcp @ 0x...] Connection ... refused``), TensorFlow
and LiteRT (``oneDNN custom operations are on``, ``Created TensorFlow Lite XNNPACK delegate``) write to the process's
file descriptor 2 from C code, past Python. ``library_output(log)`` points descriptor 2 at the log file for the
duration of a command, and gives Python's own ``sys.stderr`` (our messages, progress bars, a traceback) a copy of
the terminal, so only the library lines move. The Python loggers of the same libraries go to the log as well.
Decoder and probe processes started meanwhile inherit descriptor 2, so their library lines land there too.

The notebooks' kernels do the same through ``kernel_guard`` (``logs/<notebook>.kernel.log``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

# Python loggers of libraries whose records belong with their C-level lines, not on the terminal.
LIBRARY_LOGGERS = ("absl", "tensorflow", "keras", "h5py", "jax", "matplotlib", "PIL", "ray", "numba")
_OWN_CODE = str(Path(__file__).resolve().parents[1])  # the nexara_lib folder: its warnings are the product's


@contextlib.contextmanager
def library_output(log_path: str | Path) -> Iterator[Path]:
    """Send C-level stderr and the library loggers to ``log_path`` (appended) while the block runs.

    The log is written in place when its folder exists; otherwise into a temporary file that is appended to
    ``log_path`` at the end if the command created the folder (a command refused on bad input leaves nothing
    behind). Yields the file being written.
    """
    final = Path(log_path)
    direct = final.parent.is_dir()
    if direct:
        target = final
    else:
        handle, name = tempfile.mkstemp(prefix=f"nexara-{final.stem}-", suffix=".log")
        os.close(handle)
        target = Path(name)
    with open(target, "ab") as log:
        log.write(f"--- {dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %z}: {' '.join(sys.argv)}\n".encode())
        log.flush()
        with _stderr_to(log.fileno()), _loggers_to(target), _library_warnings_to(log):
            yield target
    if not direct:
        _move_into_place(target, final)


def log_grew(path: Path, since: int) -> bool:
    """True when ``path`` holds more than ``since`` bytes (the library wrote something there)."""
    try:
        return path.stat().st_size > since
    except OSError:
        return False


@contextlib.contextmanager
def _stderr_to(fd: int) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    swap = sys.stderr is sys.__stderr__  # not when a caller (pytest, a notebook) already captures Python's stderr
    terminal = None
    if swap:
        terminal = open(os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding, errors=sys.stderr.errors)
        sys.stderr = terminal
    os.dup2(fd, 2)
    try:
        yield
    finally:
        if terminal is not None:
            terminal.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if terminal is not None:
            sys.stderr = sys.__stderr__
            terminal.close()


@contextlib.contextmanager
def _loggers_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
        handler.close()


@contextlib.contextmanager
def _library_warnings_to(log) -> Iterator[None]:
    """Python warnings raised in a library go to the log; the library's own (``nexara_lib``) stay on the terminal."""
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if _OWN_CODE in str(filename):
            show(message, category, filename, lineno, file, line)
        else:
            log.write(f"{category.__name__}: {message} ({filename}:{lineno})\n".encode(errors="replace"))
            log.flush()

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = show


def _move_into_place(pending: Path, final: Path) -> None:
    """Append the temporary log to ``final`` when its folder exists now; drop it otherwise."""
    try:
        if final.parent.is_dir():
            with open(final, "ab") as out:
                out.write(pending.read_bytes())
    except OSError:  # a full or read-only disk: the command's own error says so; the log is not worth a second one
        pass
    finally:
        pending.unlink(missing_ok=True)
