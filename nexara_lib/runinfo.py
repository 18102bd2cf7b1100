"""Facts about a run's environment (git commit, package versions) and small JSON helpers.

Everything here is cheap: versions come from installed-package metadata, so
recording them never imports TensorFlow or OpenCV.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

# Reported name -> distribution names that provide it, first installed one wins
# (TensorFlow and OpenCV ship under several distribution names).
PACKAGES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos", "tf-nightly"),
    "keras": ("keras",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
               "opencv-contrib-python-headless"),
    "pandas": ("pandas",),
    "scikit-learn": ("scikit-learn",),
    "scipy": ("scipy",),
    "matplotlib": ("matplotlib",),
    "ipywidgets": ("ipywidgets",),
    "papermill": ("papermill",),
    "nbconvert": ("nbconvert",),
    "nbclient": ("nbclient",),
    "nbformat": ("nbformat",),
    "ipykernel": ("ipykernel",),
    "pyyaml": ("PyYAML",),
}


def _git(repo_dir: str | Path, *args: str) -> str | None:
    """Run one git command in ``repo_dir``; None when git or the repository is missing."""
    try:
        done = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(repo_dir: str | Path) -> str | None:
    """The commit checked out in ``repo_dir``, or None outside a repository / without commits."""
    return _git(repo_dir, "rev-parse", "HEAD") or None


def git_dirty(repo_dir: str | Path) -> bool | None:
    """True when ``repo_dir`` has uncommitted changes (untracked files count); None if unknown."""
    status = _git(repo_dir, "status", "--porcelain")
    return None if status is None else bool(status)


def git_info(repo_dir: str | Path) -> dict:
    """``{"commit": str|None, "dirty": bool|None}`` for ``repo_dir``."""
    return {"commit": git_commit(repo_dir), "dirty": git_dirty(repo_dir)}


def package_versions() -> dict:
    """Python, platform and key package versions (None for a package that is not installed)."""
    versions: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name, distributions in PACKAGES.items():
        versions[name] = None
        for dist in distributions:
            try:
                versions[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    from nexara_lib import __version__  # the package root is tiny; no heavy imports
    versions["nexara_lib"] = __version__
    return versions


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


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON via a temporary file and ``os.replace``.

    A reader (or a crash) never sees a half-written file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | Path, default: Any = None) -> Any:
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
