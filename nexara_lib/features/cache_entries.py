"""One entry of the feature cache on disk, checked before it is trusted.

An entry is two files side by side:

* ``<name>.npy``: the array in NumPy's ``.npy`` format (never pickled objects);
* ``<name>.npy.sum``: its checksum file, JSON ``{"format": 1, "shape": [T, D], "dtype": "<f2",
  "bytes": N, "sha256": "..."}`` where ``bytes`` and ``sha256`` cover the whole ``.npy`` file.

``write_entry`` writes the checksum file first, then the ``.npy``, each atomically (``nexara_lib.io``):
the ``.npy`` appearing is the commit. A crash leaves nothing new, or a checksum file without its
``.npy`` (the clip is not cached and gets computed), or a complete entry. An ``.npy`` without a
checksum file was not written by this writer (an older cache, a copy, a hand edit) and is not trusted.

``read_entry`` reads the bytes once and checks, in order: the checksum file, the size (a truncated
file is named as such), the sha256, the ``.npy`` header (parsed by ``numpy.lib.format``; an
object array is refused, nothing is unpickled) and the shape and dtype against the checksum file.
Any fault raises ``CacheEntryError``, naming the file, what is wrong and how to fix it.
``quarantine`` moves a bad entry aside into ``<cache dir>/bad/`` so that it is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from nexara_lib.io import write_atomic, write_json_atomic

SUM_SUFFIX = ".sum"
ENTRY_FORMAT = 1
BAD_DIR = "bad"
FIX = (
    "re-run feature extraction (notebook 02 or `nexara extract`): it moves the bad entry aside "
    f"into the cache's {BAD_DIR}/ folder and computes the clip again"
)


class CacheEntryError(ValueError):
    """A cached feature file that cannot be trusted: ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"feature cache entry {self.path} is unusable: {reason}; {FIX}")


def sum_path(path: str | os.PathLike) -> Path:
    """The checksum file of the entry whose array file is ``path``."""
    path = Path(path)
    return path.with_name(path.name + SUM_SUFFIX)


def write_entry(path: str | os.PathLike, array) -> Path:
    """Write ``array`` as the entry ``path`` (``.npy``) with its checksum file; returns ``path``."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise TypeError(f"cache entry {path}: an array of Python objects cannot be cached, got dtype {array.dtype}")
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    data = buffer.getvalue()
    write_json_atomic(
        sum_path(path),
        {
            "format": ENTRY_FORMAT,
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    return write_atomic(path, lambda handle: handle.write(data), binary=True)


def _read_sum(path: Path) -> dict:
    """The checksum file of entry ``path``, checked for its fields."""
    where = sum_path(path)
    try:
        meta = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheEntryError(
            path,
            f"its checksum file {where.name} is missing (the entry was not written by "
            "this version's extraction, or the checksum file was removed)",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CacheEntryError(path, f"its checksum file {where.name} is unreadable ({err})") from None
    try:
        ok = (
            isinstance(meta, dict)
            and meta.get("format") == ENTRY_FORMAT
            and isinstance(meta["bytes"], int)
            and isinstance(meta["sha256"], str)
            and all(isinstance(n, int) and n >= 0 for n in meta["shape"])
        )
        dtype = np.dtype(meta["dtype"]) if ok else None
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok or dtype is None or dtype.hasobject:
        raise CacheEntryError(
            path, f"its checksum file {where.name} does not hold format {ENTRY_FORMAT} (shape, dtype, bytes, sha256)"
        )
    return {**meta, "shape": tuple(meta["shape"]), "dtype": dtype}


def _describe(shape, dtype) -> str:
    return f"{tuple(shape)} {np.dtype(dtype).name}"


def read_entry(path: str | os.PathLike) -> np.ndarray:
    """The array of the entry ``path`` after every check passed (a read-only array).

    Raises:
        CacheEntryError: the ``.npy`` or its checksum file is missing, cut short, changed,
            not an array of numbers, or disagrees with the checksum file on shape or dtype.
    """
    path = Path(path)
    meta = _read_sum(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CacheEntryError(path, "the .npy file is missing (its checksum file is there)") from None
    except OSError as err:
        raise CacheEntryError(path, f"the file cannot be read ({err.strerror or err})") from None
    if len(data) != meta["bytes"]:
        what = "truncated" if len(data) < meta["bytes"] else "longer than written"
        raise CacheEntryError(path, f"{what}: {len(data)} of {meta['bytes']} bytes")
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise CacheEntryError(
            path,
            f"checksum mismatch: its contents changed after extraction wrote them "
            f"(sha256 {digest[:12]}..., recorded {meta['sha256'][:12]}...)",
        )
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
    except (ValueError, TypeError, SyntaxError, EOFError):
        raise CacheEntryError(path, "not a NumPy array file (its header does not parse)") from None
    if dtype.hasobject:
        raise CacheEntryError(path, "holds Python objects, not numbers")
    if fortran:
        raise CacheEntryError(path, "stored in Fortran order; extraction writes C order")
    if tuple(shape) != meta["shape"] or dtype != meta["dtype"]:
        raise CacheEntryError(
            path,
            f"wrong shape or dtype: the file holds {_describe(shape, dtype)}, "
            f"its checksum file says {_describe(meta['shape'], meta['dtype'])}",
        )
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - stream.tell() != count * dtype.itemsize:
        raise CacheEntryError(
            path,
            f"truncated: {len(data) - stream.tell()} bytes of data for "
            f"{_describe(shape, dtype)} ({count * dtype.itemsize} bytes)",
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell()).reshape(shape)


def quarantine(path: str | os.PathLike, reason: str) -> Path:
    """Move entry ``path`` (its ``.npy`` and checksum file, whichever exist) into ``<folder>/bad/``.

    The moved names carry a time stamp and this process id, so moving the same entry again does not
    overwrite the earlier copy; ``bad/moved.jsonl`` records what was moved and why. Returns the
    moved ``.npy`` path.
    """
    path = Path(path)
    bad = path.parent / BAD_DIR
    bad.mkdir(exist_ok=True)
    stem = f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    target, n = bad / f"{stem}{path.suffix}", 0
    while target.exists() or sum_path(target).exists():
        n += 1
        target = bad / f"{stem}-{n}{path.suffix}"
    for source, dest in ((path, target), (sum_path(path), sum_path(target))):
        try:
            os.replace(source, dest)
        except FileNotFoundError:
            pass
    with open(bad / "moved.jsonl", "a", encoding="utf-8") as log:
        log.write(
            json.dumps(
                {
                    "file": path.name,
                    "moved_to": target.name,
                    "reason": reason,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
            )
            + "\n"
        )
    return target
