"""``nexara --version``: the package version and the git commit of the checkout it runs from."""

from __future__ import annotations

from pathlib import Path

from nexara_lib import __version__
from nexara_lib.run.runinfo import git_commit, git_dirty

CHECKOUT = Path(__file__).resolve().parents[2]  # the folder holding nexara_lib/: a git checkout, or site-packages


def version_text(checkout: str | Path = CHECKOUT) -> str:
    """``nexara 0.1.0 (git 1a2b3c4d5e6f, uncommitted changes)``; says so when it does not run from a checkout."""
    checkout = Path(checkout)
    # Only the checkout's own .git: an installed copy inside another repository (a .venv in a clone) is not one.
    commit = git_commit(checkout) if (checkout / ".git").exists() else None
    if commit is None:
        return f"nexara {__version__} (not a git checkout: no commit to report)"
    dirty = ", uncommitted changes" if git_dirty(checkout) else ""
    return f"nexara {__version__} (git {commit[:12]}{dirty})"
