"""Files that are whole or absent: the one atomic writer, and JSON in and out.

Every artifact of a run (JSON, CSV, ``.npy`` features, ``.keras`` models, HTML reports,
video clips) is written to a temporary name in the folder it will live in, flushed to
disk, then renamed over the final name. A reader, a crash or ``kill -9`` never sees
half a file. ``atomic_path`` is that mechanism; the helpers below are its common uses.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, tmp_dir: str | os.PathLike | None = None, keep_suffix: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write instead of ``path``; on success it replaces ``path``.

    The temporary name is ``.<name>.<pid>.tmp`` (a stale one matches ``.*.tmp``); with
    ``keep_suffix`` it ends in ``path``'s suffix instead, for writers that pick the format
    from it (Keras, OpenCV). It lives in ``tmp_dir`` (default: ``path``'s folder; it must be
    on the same filesystem). On an exception the temporary file is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = f".{path.stem}.{os.getpid()}.tmp{path.suffix}" if keep_suffix else f".{path.name}.{os.getpid()}.tmp"
    tmp = Path(tmp_dir or path.parent) / name
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[Any], Any], binary: bool = False) -> Path:
    """Open a temporary file, let ``write(handle)`` fill it, then put it in place atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if binary:
            with open(tmp, "wb") as handle:
                write(handle)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                write(handle)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda handle: handle.write(text))


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from NumPy scalars/arrays, paths, sets and tuples; NaN/inf become None
    (not valid JSON for other readers: browsers, jq)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy arrays and scalars, without importing NumPy
        return to_jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{type(value).__name__} value {value!r} cannot be written as JSON")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically. Returns the path written."""
    text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read a JSON file; ``default`` when it does not exist.

    Raises:
        ValueError: the file exists but is not valid JSON (it is never silently replaced).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or delete the file") from None
