"""Run the experiment notebooks in order with papermill and record the run.

One call of ``run_pipeline`` = one folder ``<output_root>/<run_name>/`` with
``params.yaml``, ``run.json`` (kept up to date after every notebook),
``notebooks/`` (executed copies), ``reports/`` (HTML + ``index.html``) and
``artifacts/`` (written by the notebooks). The first failing notebook stops
the run with ``NotebookFailed``, after its partial notebook and reports are
saved.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from nexara_lib.config import dump_params
from nexara_lib.io import read_json
from nexara_lib.layout import RunLayout
from nexara_lib.run.execute import RunRecord, execute_notebook, now_iso
from nexara_lib.run.failures import NotebookFailed, RunInterrupted
from nexara_lib.run.fingerprint import notebook_fingerprint, run_fingerprint
from nexara_lib.run.index_page import write_index
from nexara_lib.run.io_errors import RunnerIOError, describe, is_operator_error, operator_errors
from nexara_lib.run.kernel import KERNEL_NAME, REPO_ROOT, ensure_kernel
from nexara_lib.run.lock import mark_interrupted, run_lock
from nexara_lib.run.params import resolve_params
from nexara_lib.run.reproduction import reproduction_record
from nexara_lib.run.runinfo import git_info, package_versions
from nexara_lib.stages.formats import format_seconds

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
_NOTEBOOK_NAME = re.compile(r"^(\d\d)_.+\.ipynb$")


# --- notebooks ----------------------------------------------------------------


def list_notebooks(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> list[Path]:
    """The pipeline's notebooks in ``notebooks_dir``: ``NN_*.ipynb``, in number order."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"notebooks folder {notebooks_dir} does not exist")
    return sorted(p for p in notebooks_dir.iterdir() if p.is_file() and _NOTEBOOK_NAME.match(p.name))


def select_notebooks(available: list[Path], wanted: Iterable[str | int] | str | int | None) -> list[Path]:
    """Pick notebooks by number (``3``, ``"03"``) or name (``"03_training"``, ``"03_training.ipynb"``).

    Returns the chosen notebooks in pipeline order; ``None`` chooses all.
    """
    if wanted is None:
        return list(available)
    if isinstance(wanted, (str, int)):
        wanted = [wanted]
    chosen = set()
    for item in wanted:
        text = str(item).strip()
        matches = [
            p for p in available if (text.isdigit() and int(p.name[:2]) == int(text)) or text in (p.stem, p.name)
        ]
        if not matches:
            names = ", ".join(p.stem for p in available) or "none"
            raise ValueError(f"no notebook matches {item!r}; available: {names}")
        chosen.update(matches)
    return [p for p in available if p in chosen]


# --- run record -----------------------------------------------------------------


def _new_run_dir(output_root: Path, run_name: str, param_files: list[str]) -> Path:
    """``output_root/run_name``; an empty name becomes ``<last params stem>-<timestamp>`` (never reused)."""
    if run_name:
        return output_root / run_name
    stem = Path(param_files[-1]).stem if param_files else "run"
    base = f"{stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    candidate, n = output_root / base, 2
    while candidate.exists():  # two runs started within the same second
        candidate, n = output_root / f"{base}-{n}", n + 1
    return candidate


# --- pipeline -------------------------------------------------------------------


def run_pipeline(
    param_files: Iterable[str | Path] | str | Path,
    overrides: Mapping[str, Any] | None = None,
    notebooks: Iterable[str | int] | str | int | None = None,
    run_dir: str | Path | None = None,
    log: Callable[[str], Any] = print,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    kernel_name: str = KERNEL_NAME,
    force: bool = False,
) -> Path:
    """Execute the pipeline notebooks with one set of parameters.

    In an existing run folder, a notebook that finished with the same fingerprint (parameters, notebook,
    library code, input listings; see ``fingerprint``) is kept, not run again, unless ``force`` is set or
    ``notebooks`` names it; once one notebook runs, every later one runs too (its inputs may differ).

    Args:
        param_files: YAML parameter files, layered left to right.
        overrides: key -> value applied after the files (``--set``).
        notebooks: a subset by number or name (default: all, in order); named notebooks always run.
        run_dir: run folder to use instead of ``output_root/run_name``; an
            existing run folder is reused (earlier notebooks' results and
            artifacts stay).
        log: receives one-line progress messages.
        notebooks_dir: where the ``NN_*.ipynb`` notebooks are.
        kernel_name: Jupyter kernel to create/use for the current Python.
        force: run every selected notebook, also those that finished with the same fingerprint.

    Returns:
        The run folder.

    Raises:
        ParamError: invalid parameters (nothing is created).
        ValueError: ``notebooks`` names no notebook (nothing is created).
        RunLocked: another live run holds the run folder (nothing is changed in it).
        RunnerIOError: the runner could not write the run folder (full disk, read-only, no permission);
            ``run.json`` records it when it still can be written.
        NotebookFailed: a notebook raised; run.json, its partial notebook,
            its reports and index.html are written first.
        RunInterrupted: Ctrl-C (or SIGTERM via the command line); recorded the same way.
    """
    given = [param_files] if isinstance(param_files, (str, Path)) else list(param_files)
    files = [str(Path(f).expanduser().resolve()) for f in given]
    overrides = dict(overrides or {})
    params = resolve_params(files, overrides)  # ParamError before anything is created
    selected = select_notebooks(list_notebooks(notebooks_dir), notebooks)
    if not selected:
        raise ValueError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
    kernel = ensure_kernel(kernel_name)

    run_dir = Path(run_dir).resolve() if run_dir else _new_run_dir(Path(params.output_root), params.run_name, files)
    keep = () if force or notebooks is not None else selected
    with operator_errors(run_dir):  # a full disk, read-only or forbidden folder: one line, see io_errors
        run_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(run_dir, log):  # one run per folder: a second one refuses at once, naming the holder
            return _run_locked(run_dir, params, files, overrides, selected, keep, kernel, log, notebooks_dir)


def _run_locked(
    run_dir: Path,
    params,
    param_files: list[str],
    overrides: dict,
    selected: list[Path],
    keep: Iterable[Path],
    kernel: str,
    log: Callable[[str], Any],
    notebooks_dir: str | Path,
) -> Path:
    with operator_errors(run_dir):
        previous = mark_interrupted(run_dir / "run.json", log)
        for sub in ("notebooks", "reports", "artifacts"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        dump_params(params, run_dir / "params.yaml")
    shared = run_fingerprint(params.to_dict())
    entries: dict[str, dict[str, Any]] = {}
    for path in list_notebooks(notebooks_dir):
        if path in selected:
            entries[path.stem] = {
                "notebook": path.name,
                "source": str(path),
                "status": "pending",
                "fingerprint": notebook_fingerprint(path, shared),
            }
        else:  # keep what an earlier run in this folder recorded
            entries[path.stem] = (previous.get("notebooks") or {}).get(path.stem) or {
                "notebook": path.name,
                "status": "not run",
            }
    run = {
        "run_name": run_dir.name,
        "run_dir": str(run_dir),
        "status": "running",
        "started_at": now_iso(),
        "finished_at": None,
        "duration_s": None,
        "param_files": param_files,
        "overrides": overrides,
        "params": params.to_dict(),
        "param_sources": {key: params.source(key) for key in params if params.source(key) != "default"},
        "git": git_info(REPO_ROOT),
        "versions": package_versions(),
        "kernel": kernel,
        "notebooks": entries,
    }
    record = RunRecord(run_dir / "run.json", run)
    record.save()
    log(f"run folder: {run_dir}")

    injected = {**params.to_dict(), "run_dir": str(run_dir), "param_files": param_files}
    run_started = time.monotonic()
    reusable = set(keep)
    number = 0
    try:
        for number, notebook in enumerate(selected, 1):
            entry = entries[notebook.stem]
            before = (previous.get("notebooks") or {}).get(notebook.stem) or {}
            if notebook in reusable and _finished_before(before, entry, run_dir):
                entries[notebook.stem] = {**before, "status": "ok", "kept": True}
                log(
                    f"[{number}/{len(selected)}] {notebook.name}: finished before with the same parameters and inputs; "
                    "kept (--force runs it again)"
                )
                continue
            reusable = set()  # this one runs: later notebooks' inputs may change, so they run too
            execute_notebook(notebook, entry, run_dir, injected, params, kernel, record, number, len(selected), log)
    except BaseException as err:  # noqa: BLE001 - recorded, then re-raised as one clear error
        if isinstance(err, RunnerIOError):
            run["error"] = str(err)
        elif is_operator_error(err):
            run["error"] = describe(err)
        _finish(record, run_dir, run_started, selected, number, log)
        if not isinstance(err, Exception):  # Ctrl-C or SIGTERM
            executed = run_dir / "notebooks" / selected[number - 1].name if number else None
            raise RunInterrupted(selected[number - 1].name if number else None, executed, run_dir) from None
        raise
    _finish(record, run_dir, run_started, selected, len(selected), log)
    return run_dir


def _finished_before(before: dict, entry: dict, run_dir: Path) -> bool:
    """The folder holds this notebook's result for the same fingerprint."""
    return (
        before.get("status") == "ok"
        and before.get("fingerprint") == entry["fingerprint"]
        and bool(before.get("executed"))
        and (run_dir / before["executed"]).exists()
    )


def _finish(
    record: RunRecord, run_dir: Path, started: float, selected: list[Path], done: int, log: Callable[[str], Any]
) -> None:
    """Close the record (notebooks after the ``done``-th are not run), write the index.

    Never raises on a file error: that was raised already (or is raised by the caller); it is logged.
    """
    run = record.run
    for notebook in selected:  # not reached, or stopped by the runner's own file error before it started
        if run["notebooks"][notebook.stem]["status"] in ("pending", "running"):
            run["notebooks"][notebook.stem]["status"] = "not run"
    # The run's status covers what this call ran, not results kept from an earlier run in the folder.
    statuses = [run["notebooks"][n.stem].get("status") for n in selected[:done]]
    status = "failed" if run.get("error") else next((s for s in ("failed", "interrupted") if s in statuses), "ok")
    run.update(status=status, finished_at=now_iso(), duration_s=round(time.monotonic() - started, 3))
    selection = read_json(RunLayout(run_dir).selection)
    if selection is not None:  # notebook 03 chose the recipe by cross-validation: say which, in the run record
        run["selection"] = {k: selection[k] for k in ("winner", "choices", "verdict")}
    run["reproduction"] = reproduction_record(run["params"], run_dir)  # what feeds results, and where things lay
    unsaved = record.try_save()
    try:
        with operator_errors(run_dir / "reports" / "index.html"):
            index = write_index(run_dir)
    except RunnerIOError as err:
        unsaved = unsaved or str(err)
    else:
        took = sum(
            float(run["notebooks"][n.stem].get("duration_s") or 0)
            for n in selected[:done]
            if not run["notebooks"][n.stem].get("kept")
        )
        log(
            f"notebooks took {format_seconds(took)} (run.json); the reports, one page per step, open from "
            f"reports: {index.resolve().as_uri()}"
        )
    if unsaved:
        log(f"  warning: {unsaved}")


__all__ = [
    "NOTEBOOKS_DIR",
    "NotebookFailed",
    "RunInterrupted",
    "RunnerIOError",
    "ensure_kernel",
    "list_notebooks",
    "run_pipeline",
    "select_notebooks",
]
