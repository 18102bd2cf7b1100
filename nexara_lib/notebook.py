"""What every notebook does first: resolve parameters, open the run folder, seed, set up display."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .layout import RunLayout, open_run
from .params import Params, params_from_namespace


def start_notebook(param_files: Iterable[str | Path], namespace: Mapping[str, Any],
                   run_dir: str | Path) -> tuple[Params, RunLayout]:
    """Resolve parameters (files, then keys papermill injected), open the run folder, seed.

    Args:
        param_files: layered parameter YAML files from the notebook's ``parameters`` cell.
        namespace: the notebook's ``globals()``: any parameter key defined there overrides the files.
        run_dir: the run folder (created if missing).
    Returns:
        (params, layout).
    """
    params = params_from_namespace(list(param_files), namespace)
    layout = open_run(run_dir)
    random.seed(params["seed"])
    np.random.seed(params["seed"])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("absl", "tensorflow", "matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        import pandas as pd
        pd.set_option("display.max_columns", 30)
        pd.set_option("display.width", 160)
        pd.set_option("display.precision", 3)
    except ImportError:
        pass
    return params, layout
