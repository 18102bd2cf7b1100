"""The Jupyter kernel a run's notebooks execute in: its spec, its environment, and its lifeline.

``ensure_kernel`` makes sure the ``nexara`` kernelspec runs this interpreter. ``guarded_kernel_manager``
is the kernel manager the runner hands papermill: it starts the kernel through
``python -m nexara_lib.run.kernel_guard RUNNER_PID -- <the spec's command>``, so a kernel whose runner is
killed (``kill -9``, a lost terminal) ends, and takes its decoder processes with it, within
``lifeline.POLL_S`` seconds instead of running on in its own session.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from nexara_lib.io import write_json_atomic

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_NAME = "nexara"
# ipykernel would otherwise copy what C/C++ libraries write to the process's descriptors 1 and 2 (TensorFlow's
# "NodeDef mentions attribute ..." lines, dozens per training) into the cell outputs; without it, those lines
# stay in the kernel process's stderr, i.e. in logs/<notebook>.kernel.log. Python's print and logging still
# reach the cells.
NO_FD_CAPTURE = "--IPKernelApp.capture_fd_output=False"


def _spec_python(name: str) -> tuple[str | None, str | None]:
    """(python executable, folder) of the kernelspec ``name`` Jupyter would use; Nones if absent."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return None, None
    return (spec.argv[0] if spec.argv else None), spec.resource_dir


def ensure_kernel(name: str = KERNEL_NAME, prefix: str | Path | None = None) -> str:
    """Make sure the Jupyter kernel ``name`` runs the current interpreter; return ``name``.

    Papermill fails with "No such kernel" on a fresh machine, and a stale spec
    would run notebooks under another Python. If the spec is missing or points
    elsewhere, it is (re)written under ``prefix`` (default ``sys.prefix``, i.e.
    inside this virtual environment). ``kernel.json`` is written atomically, so
    concurrent callers never see a half-installed spec. Idempotent.

    Raises:
        RuntimeError: a spec of that name in a folder Jupyter searches first
            (e.g. the user's) still points at another Python.
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"kernel name {name!r} may only contain letters, digits, '.', '_' and '-'")
    python, _ = _spec_python(name)
    if python and os.path.abspath(python) == os.path.abspath(sys.executable):
        return name
    from ipykernel.kernelspec import get_kernel_dict

    spec = get_kernel_dict()  # argv starts with sys.executable
    spec["display_name"] = "Python (nexara)" if name == KERNEL_NAME else f"Python ({name})"
    spec_dir = Path(prefix or sys.prefix) / "share" / "jupyter" / "kernels" / name
    write_json_atomic(spec_dir / "kernel.json", spec)
    python, found_in = _spec_python(name)
    if not python or os.path.abspath(python) != os.path.abspath(sys.executable):
        raise RuntimeError(
            f"Jupyter kernel {name!r} resolves to {found_in} (python {python}), not to {sys.executable}, "
            f"even after installing it in {spec_dir}; remove the other one "
            f"(`jupyter kernelspec remove {name}`) and run again"
        )
    return name


@contextlib.contextmanager
def kernel_env():
    """Let the kernel import this checkout's ``nexara_lib`` although it runs in the run folder."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([old] if old else []))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def guarded_kernel_manager(log_file: str | Path | None = None) -> type:
    """A jupyter_client kernel manager whose kernels run under ``kernel_guard`` (see the module docstring).

    Args:
        log_file: where the kernel process's own stdout and stderr go (C-level library chatter, the
            kernel's log, a crash report), instead of the operator's terminal. Cell outputs are not
            there: they travel to the executed notebook as usual. An ipykernel is started with
            ``NO_FD_CAPTURE``, so C-level output goes here and not into the cells.
    """
    # imported on first use: jupyter_client costs time that listing notebooks or checking parameters should not pay
    from jupyter_client.manager import AsyncKernelManager

    class GuardedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if "-m" not in cmd[1:-1]:  # not `python [options] -m <launcher> ...`: nothing to wrap
                return cmd
            at = cmd.index("-m", 1)  # interpreter options (e.g. -Xfrozen_modules=off) stay in front
            if cmd[at + 1].startswith("ipykernel") and not any("capture_fd_output" in a for a in cmd):
                cmd = [*cmd, NO_FD_CAPTURE]
            return [*cmd[:at], "-m", "nexara_lib.run.kernel_guard", str(os.getpid()), "--", *cmd[at:]]

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            if log_file is None:
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "ab") as log:  # the kernel gets its own copy of the descriptor
                return await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})

    return GuardedKernelManager
