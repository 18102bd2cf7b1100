"""What a notebook's result depends on, as one hash: a rerun of a finished run skips what would not change.

A notebook's fingerprint covers the resolved parameters, the notebook file, the library's code and the
inputs the parameters point at (data folders, the groups CSV, pretrained files: every file's relative
path, size and modification time, not its bytes, so a 50 GB dataset is listed in a second, not hashed
for an hour). Outputs of earlier notebooks are covered by the runner's rule that once one notebook runs,
every later one runs too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nexara_lib.config import SCHEMA
from nexara_lib.io import to_jsonable

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_PATH_KINDS = ("path", "paths", "path_list")
_NOT_INPUTS = ("output_root",)  # where results go, not what they are made from


def _listing(path: Path, digest) -> None:
    """Feed ``digest`` with the names, sizes and modification times of ``path`` (a file or a tree)."""
    if path.is_file():
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            file = Path(folder) / name
            try:
                stat = file.stat()
            except OSError:
                continue  # vanished meanwhile; the audit will say so
            digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())


def input_paths(params: Mapping[str, Any]) -> list[Path]:
    """Existing files and folders the parameters read from (data, groups CSV, pretrained files...)."""
    paths = []
    for key, spec in SCHEMA.items():
        value = params.get(key)
        if key in _NOT_INPUTS or value in (None, "", []):
            continue
        if spec.kind in _PATH_KINDS:
            paths += [Path(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        elif isinstance(value, str) and os.sep in value:  # e.g. backbone_weights given as a local file
            paths.append(Path(value))
    return [p for p in paths if p.exists()]


def code_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 of the library's Python sources: a code change reruns what it could change."""
    digest = hashlib.sha256()
    for file in sorted(package_dir.rglob("*.py")):
        digest.update(str(file.relative_to(package_dir)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def run_fingerprint(params: Mapping[str, Any]) -> str:
    """The part every notebook of a run shares: parameters, library code and the inputs' listings."""
    digest = hashlib.sha256(json.dumps(to_jsonable(dict(params)), sort_keys=True).encode())
    digest.update(code_digest().encode())
    for path in input_paths(params):
        digest.update(str(path).encode())
        _listing(path, digest)
    return digest.hexdigest()


def notebook_fingerprint(notebook: Path, shared: str) -> str:
    """One notebook's fingerprint: ``run_fingerprint`` plus the notebook file's bytes."""
    return hashlib.sha256(shared.encode() + Path(notebook).read_bytes()).hexdigest()
