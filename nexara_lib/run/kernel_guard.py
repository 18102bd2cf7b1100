"""Start a notebook kernel that ends with the run: ``python -m nexara_lib.run.kernel_guard PID -- -m MODULE ARGS``.

The guard starts ``lifeline.watch_parent(PID, group=True)`` in this process, then runs the kernel's launcher
module (``ipykernel_launcher``) in it as ``__main__``. When the runner (PID) is gone, the whole kernel
process group ends: the kernel, its decoder processes and their resource tracker. ipykernel's own parent
poller would end only the kernel (leaving its decoders orphaned), so it is switched off here.
"""

from __future__ import annotations

import os
import runpy
import sys

from nexara_lib.lifeline import watch_parent


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[1] != "--" or argv[2] != "-m":
        raise SystemExit("usage: python -m nexara_lib.run.kernel_guard RUNNER_PID -- -m MODULE [ARGS...]")
    watch_parent(int(argv[0]), group=True)
    # One watcher, the one that also ends the kernel's children: ipykernel polls no parent when told its
    # parent is PID 1 (its own poller would end only the kernel, and racing ours it could win).
    os.environ["JPY_PARENT_PID"] = "1"
    module = argv[3]
    sys.argv = [module, *argv[4:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
