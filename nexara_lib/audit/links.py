"""What ties clips together: identical bytes (``file_sha1``) and rows joined into units by a
shared key or a listed pair (``linked_units``), used by the duplicate search and the splits.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np


def file_sha1(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """SHA-1 of a file's bytes, read in chunks ("" if it cannot be read).

    Args:
        path: file.
        chunk_bytes: read size.
    Returns:
        Hex digest, or "" for an unreadable file.
    """
    digest = hashlib.sha1()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def linked_units(keys_per_column: list[list[str]], pairs=()) -> np.ndarray:
    """Unit id per row: rows sharing any non-empty key (in any column), or listed as a pair, share a unit."""
    n = len(keys_per_column[0]) if keys_per_column else 0
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i, j):
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    for keys in keys_per_column:
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if not key:
                continue
            if key in first:
                join(i, first[key])
            else:
                first[key] = i
    for i, j in pairs:
        join(i, j)
    return np.array([find(i) for i in range(n)], dtype=np.int64)
