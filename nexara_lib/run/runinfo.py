"""Facts about a run's environment: git commit and package versions.

Everything here is cheap: versions come from installed-package metadata, so
recording them never imports TensorFlow or OpenCV.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

# Reported name -> distribution names that provide it, first installed one wins
# (TensorFlow and OpenCV ship under several distribution names).
PACKAGES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos", "tf-nightly"),
    "keras": ("keras",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
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
