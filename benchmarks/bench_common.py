"""Small helpers shared by the benchmarks (``bench_training``, ``bench_extraction``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def check_int(name: str, value: Any, low: int) -> None:
    """Raise ValueError unless ``value`` is an integer >= ``low`` (``name`` says which option)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (a busy machine makes timings worthless), None where unknown."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def run_cli(parser, run, argv=None) -> int:
    """Parse ``argv`` with ``parser`` and call ``run(args)``; a ValueError is one line on stderr and exit code 2."""
    import sys

    args = parser.parse_args(argv)
    try:
        run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
