"""What every notebook does first: resolve parameters, open the run folder, seed, set up display."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Quiet TensorFlow's C++ start-up chatter in notebook output; must be set before TensorFlow loads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from nexara_lib.config import Params  # noqa: E402
from nexara_lib.features.backbones import use_pretrained_dir  # noqa: E402
from nexara_lib.layout import RunLayout, open_run  # noqa: E402
from nexara_lib.run.params import params_from_namespace
from nexara_lib.stages.tables import install_display_formatters


def start_notebook(
    param_files: Iterable[str | Path], namespace: Mapping[str, Any], run_dir: str | Path
) -> tuple[Params, RunLayout]:
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
    use_pretrained_dir(params["pretrained_dir"])
    random.seed(params["seed"])
    np.random.seed(params["seed"])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for noisy in ("absl", "tensorflow"):  # retracing and deprecation chatter: nothing a run's reader can act on
        logging.getLogger(noisy).setLevel(logging.ERROR)
    _show_figures_inline()
    install_display_formatters()
    try:
        import pandas as pd

        pd.set_option("display.max_columns", 30)
        pd.set_option("display.width", 160)
        pd.set_option("display.precision", 3)
    except ImportError:
        pass
    return params, layout


def _show_figures_inline() -> None:
    """Make ``display(fig)`` render library figures (``matplotlib.figure.Figure``, built without pyplot)
    as PNG in notebooks and reports; does nothing outside IPython."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("png")
