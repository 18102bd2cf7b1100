"""The runner's own file errors as one line an operator can act on.

A full disk, a read-only output root or a folder without write permission used to surface as a raw
traceback from whichever write hit it first (often ``run.json``). ``RunnerIOError`` says what could not
be written, why in plain words (with the free space found for a full disk) and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TypeGuard

# Errors of the place written to, not of the program: the operator fixes them.
OPERATOR_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}

# ``io.atomic_path``'s temporary names: ``.<name>.<pid>.tmp`` or ``.<stem>.<pid>.tmp<suffix>``
_ATOMIC_TMP = re.compile(r"^\.(.+)\.\d+\.tmp(\.[^.]+)?$")


class RunnerIOError(RuntimeError):
    """The runner could not write a file of the run (``path``, ``errno``)."""

    def __init__(self, message: str, path: str, code: int | None):
        super().__init__(message)
        self.path, self.errno = path, code


def _size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _free_space(path: Path) -> str:
    for folder in [path, *path.parents]:
        if folder.exists():
            try:
                usage = shutil.disk_usage(folder)
            except OSError:
                return "unknown"
            return f"{_size(usage.free)} free of {_size(usage.total)}"
    return "unknown"


def is_operator_error(err: BaseException) -> TypeGuard[OSError]:
    return isinstance(err, OSError) and err.errno in OPERATOR_ERRNOS


def describe(err: OSError, path: str | Path | None = None) -> str:
    """One line: which path, what is wrong with it, what to do."""
    target = Path(str(err.filename or path or "?"))
    temporary = _ATOMIC_TMP.match(target.name)
    if temporary:  # an atomic write's temporary file: name the file being written
        target = target.with_name(temporary[1] + (temporary[2] or ""))
    what = (OPERATOR_ERRNOS.get(err.errno) if err.errno is not None else None) or err.strerror or type(err).__name__
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"{_free_space(target)} there; free some space (or set output_root to a bigger disk) and run again"
    elif err.errno == errno.EROFS:
        fix = "set output_root to a writable folder and run again"
    elif err.errno in (errno.EACCES, errno.EPERM):
        fix = "make the folder writable for this user, or set output_root to one that is, and run again"
    else:
        fix = "check the folder and run again"
    return f"cannot write {target}: {what}; {fix}"


@contextlib.contextmanager
def operator_errors(path: str | Path | None = None) -> Iterator[None]:
    """Turn a full disk, read-only or forbidden folder met inside the block into ``RunnerIOError``."""
    try:
        yield
    except OSError as err:
        if not is_operator_error(err):
            raise
        raise RunnerIOError(describe(err, path), str(err.filename or path), err.errno) from None
