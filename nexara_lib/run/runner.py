"""Run the experiment notebooks in order with papermill and record the run.

One call of ``run_pipeline`` = one folder ``<output_root>/<run_name>/`` with
``params.yaml``, ``run.json`` (kept up to date after every notebook),
``notebooks/`` (executed copies), ``reports/`` (HTML + ``index.html``) and
``artifacts/`` (written by the notebooks). The first failing notebook stops
the run with ``NotebookFailed``, after its partial notebook and reports are
saved.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from nexara_lib.config import dump_params
from nexara_lib.run.lock import mark_interrupted, run_lock
from nexara_lib.run.params import resolve_params
from nexara_lib.run.reports import render_reports, write_index
from nexara_lib.io import read_json, write_json_atomic
from nexara_lib.layout import RunLayout
from nexara_lib.run.runinfo import git_info, package_versions

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
KERNEL_NAME = "nexara"
_NOTEBOOK_NAME = re.compile(r"^(\d\d)_.+\.ipynb$")


class NotebookFailed(RuntimeError):
    """A notebook of the pipeline raised; the run stopped after saving what it had.

    Attributes: ``notebook`` (file name), ``cell`` (1-based cell number in the
    source notebook, or None), ``source_line``, ``ename``, ``evalue``,
    ``partial_notebook`` (path of the saved executed notebook) and ``run_dir``.
    """

    def __init__(self, message: str, *, notebook: str, cell: int | None, source_line: str,
                 ename: str, evalue: str, partial_notebook: Path, run_dir: Path):
        super().__init__(message)
        self.notebook, self.cell, self.source_line = notebook, cell, source_line
        self.ename, self.evalue = ename, evalue
        self.partial_notebook, self.run_dir = partial_notebook, run_dir


# --- notebooks ----------------------------------------------------------------

def list_notebooks(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> list[Path]:
    """The pipeline's notebooks in ``notebooks_dir``: ``NN_*.ipynb``, in number order."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"notebooks folder {notebooks_dir} does not exist")
    return sorted(p for p in notebooks_dir.iterdir() if p.is_file() and _NOTEBOOK_NAME.match(p.name))


def select_notebooks(available: list[Path], wanted: Iterable[str | int] | None) -> list[Path]:
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
        matches = [p for p in available
                   if (text.isdigit() and int(p.name[:2]) == int(text)) or text in (p.stem, p.name)]
        if not matches:
            names = ", ".join(p.stem for p in available) or "none"
            raise ValueError(f"no notebook matches {item!r}; available: {names}")
        chosen.update(matches)
    return [p for p in available if p in chosen]


# --- kernel -------------------------------------------------------------------

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
            f"(`jupyter kernelspec remove {name}`) and run again")
    return name


# --- run record -----------------------------------------------------------------

def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


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


def _first_line(source: str) -> str:
    for line in (source or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _cell_number(source_notebook: Path, cell_source: str) -> int | None:
    """1-based number of the failing cell in the source notebook (papermill counts its injected cell)."""
    import nbformat

    try:
        nb = nbformat.read(source_notebook, as_version=4)
    except Exception:  # the message is still useful without the number
        return None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source == cell_source:
            return index + 1
    return None


@contextlib.contextmanager
def _kernel_env():
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


def _not_unknown_parameter(record: logging.LogRecord) -> bool:
    # Every resolved parameter is injected (so --set reaches every notebook), and a notebook
    # declares only the keys it shows; papermill would warn once per undeclared key.
    return not record.getMessage().startswith("Passed unknown parameter")


@contextlib.contextmanager
def _papermill_logging():
    """Show streamed cell output (papermill logs it at INFO) unless the caller configured logging."""
    logger = logging.getLogger("papermill")
    logger.addFilter(_not_unknown_parameter)
    handler = None
    if not (logging.getLogger().handlers or logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    old_level = logger.level
    if handler:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeFilter(_not_unknown_parameter)
        if handler:
            logger.removeHandler(handler)
            logger.setLevel(old_level)


def _hung(error: BaseException | None) -> bool:
    """A cell that ran past ``cell_timeout_s``, or a kernel that died under it (not a failing cell)."""
    return type(error).__name__ in ("CellTimeoutError", "DeadKernelError")


def _render(executed: Path, run_dir: Path, entry: dict, log: Callable[[str], Any]) -> None:
    """Render both reports into ``entry``; a rendering problem is logged, never hides the notebook's result."""
    try:
        full, stakeholder = render_reports(executed, run_dir / "reports")
        entry["reports"] = {"full": str(full.relative_to(run_dir)), "stakeholder": str(stakeholder.relative_to(run_dir))}
    except Exception as err:  # noqa: BLE001 - reports are secondary to the executed notebook
        entry["report_error"] = f"{type(err).__name__}: {err}"
        log(f"  warning: could not render the HTML reports of {executed.name}: {err}")


def _failure(notebook: Path, executed: Path, run_dir: Path, err: BaseException) -> tuple[str, dict]:
    """(NotebookFailed message, details) for a notebook that raised ``err``."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        source_line = _first_line(err.source)
        cell = _cell_number(notebook, err.source)
        details = {"cell": cell, "execution_count": err.exec_count, "source_line": source_line,
                   "ename": err.ename, "evalue": err.evalue}
        where = f"cell {cell}" if cell else f"cell #{err.cell_index + 1} of the executed notebook"
        if err.exec_count:
            where += f" (In [{err.exec_count}])"
        head = f"notebook {notebook.name} failed at {where}: {source_line}"
    else:  # kernel died, timed out, could not start...
        details = {"cell": None, "execution_count": None, "source_line": "",
                   "ename": type(err).__name__, "evalue": str(err)}
        head = f"notebook {notebook.name} could not be executed"
    saved = f"partial notebook: {executed}" if executed.exists() else "no partial notebook was saved"
    message = (f"{head}\n  {details['ename']}: {details['evalue']}\n  {saved}\n"
               f"  reports: {run_dir / 'reports' / 'index.html'}")
    return message, details


# --- pipeline -------------------------------------------------------------------

def run_pipeline(param_files: Iterable[str | Path] | str | Path,
                 overrides: Mapping[str, Any] | None = None,
                 notebooks: Iterable[str | int] | str | int | None = None,
                 run_dir: str | Path | None = None,
                 log: Callable[[str], Any] = print,
                 notebooks_dir: str | Path = NOTEBOOKS_DIR,
                 kernel_name: str = KERNEL_NAME) -> Path:
    """Execute the pipeline notebooks with one set of parameters.

    Args:
        param_files: YAML parameter files, layered left to right.
        overrides: key -> value applied after the files (``--set``).
        notebooks: a subset by number or name (default: all, in order).
        run_dir: run folder to use instead of ``output_root/run_name``; an
            existing run folder is reused (earlier notebooks' results and
            artifacts stay, the selected notebooks are re-run).
        log: receives one-line progress messages.
        notebooks_dir: where the ``NN_*.ipynb`` notebooks are.
        kernel_name: Jupyter kernel to create/use for the current Python.

    Returns:
        The run folder.

    Raises:
        ParamError: invalid parameters (nothing is created).
        ValueError: ``notebooks`` names no notebook (nothing is created).
        RunLocked: another live run holds the run folder (nothing is changed in it).
        NotebookFailed: a notebook raised; run.json, its partial notebook,
            its reports and index.html are written first.
    """
    param_files = [param_files] if isinstance(param_files, (str, Path)) else list(param_files)
    param_files = [str(Path(f).expanduser().resolve()) for f in param_files]
    overrides = dict(overrides or {})
    params = resolve_params(param_files, overrides)  # ParamError before anything is created
    selected = select_notebooks(list_notebooks(notebooks_dir), notebooks)
    if not selected:
        raise ValueError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
    kernel = ensure_kernel(kernel_name)

    run_dir = Path(run_dir).resolve() if run_dir else _new_run_dir(Path(params.output_root), params.run_name, param_files)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir, log):  # one run per folder: a second one refuses at once, naming the holder
        return _run_locked(run_dir, params, param_files, overrides, selected, kernel, log, notebooks_dir)


def _run_locked(run_dir: Path, params, param_files: list[str], overrides: dict, selected: list[Path], kernel: str,
                log: Callable[[str], Any], notebooks_dir: str | Path) -> Path:
    previous = mark_interrupted(run_dir / "run.json", log)
    for sub in ("notebooks", "reports", "artifacts"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    dump_params(params, run_dir / "params.yaml")

    entries = {}
    for path in list_notebooks(notebooks_dir):
        if path in selected:
            entries[path.stem] = {"notebook": path.name, "source": str(path), "status": "pending"}
        else:  # keep what an earlier run in this folder recorded
            entries[path.stem] = (previous.get("notebooks") or {}).get(path.stem) or {"notebook": path.name, "status": "not run"}
    run = {
        "run_name": run_dir.name,
        "run_dir": str(run_dir),
        "status": "running",
        "started_at": _now(),
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
    run_json = run_dir / "run.json"
    write_json_atomic(run_json, run)
    log(f"run folder: {run_dir}")

    injected = {**params.to_dict(), "run_dir": str(run_dir), "param_files": param_files}
    run_started = time.monotonic()
    failure: NotebookFailed | None = None
    import papermill  # imported here: listing notebooks or checking params should stay fast

    for number, notebook in enumerate(selected, 1):
        entry = entries[notebook.stem]
        executed = run_dir / "notebooks" / notebook.name
        entry.update(status="running", started_at=_now(), executed=str(executed.relative_to(run_dir)))
        write_json_atomic(run_json, run)
        log(f"[{number}/{len(selected)}] {notebook.name} ...")
        started = time.monotonic()
        error: BaseException | None = None
        for attempt in (1, 2):
            try:
                with _kernel_env(), _papermill_logging():
                    papermill.execute_notebook(str(notebook), str(executed), parameters=injected, cwd=str(run_dir),
                                               kernel_name=kernel, log_output=True, progress_bar=True,
                                               execution_timeout=params["cell_timeout_s"])
                error = None
            except BaseException as err:  # noqa: BLE001 - recorded, then re-raised below
                error = err
            if attempt == 1 and _hung(error):
                # A cell past cell_timeout_s or a kernel that died: known papermill/nbclient hangs (a lost
                # reply) pass on a rerun, so the notebook gets one more try, recorded in run.json.
                entry["retried"] = f"{type(error).__name__}: {_first_line(str(error))}"
                log(f"  {notebook.name}: {entry['retried']}; running the notebook once more")
                continue
            break
        entry["duration_s"] = round(time.monotonic() - started, 3)
        if executed.exists():
            _render(executed, run_dir, entry, log)
        if error is None:
            entry["status"] = "ok"
            write_json_atomic(run_json, run)
            log(f"  ok in {entry['duration_s']:.1f}s")
            continue
        entry["status"] = "failed"
        if not isinstance(error, Exception):  # Ctrl-C or exit: record it, then let it through
            entry["error"] = f"interrupted ({type(error).__name__})"
            _finish(run, run_json, run_dir, run_started, selected, number, log)
            raise error
        message, details = _failure(notebook, executed, run_dir, error)
        entry["error"] = f"{details['ename']}: {details['evalue']}" + (
            f" (cell {details['cell']}: {details['source_line']})" if details["cell"] else "")
        entry["failed_cell"] = details
        failure = NotebookFailed(message, notebook=notebook.name, partial_notebook=executed, run_dir=run_dir,
                                 **{k: details[k] for k in ("cell", "source_line", "ename", "evalue")})
        _finish(run, run_json, run_dir, run_started, selected, number, log)
        raise failure from error
    _finish(run, run_json, run_dir, run_started, selected, len(selected), log)
    return run_dir


def _finish(run: dict, run_json: Path, run_dir: Path, started: float, selected: list[Path], done: int,
            log: Callable[[str], Any]) -> None:
    """Mark the selected notebooks after the first ``done`` as not run, close the record, write the index."""
    for notebook in selected[done:]:
        run["notebooks"][notebook.stem]["status"] = "not run"
    # The run's status covers what this call ran, not results kept from an earlier run in the folder.
    failed = any(run["notebooks"][n.stem].get("status") == "failed" for n in selected[:done])
    run.update(status="failed" if failed else "ok", finished_at=_now(),
               duration_s=round(time.monotonic() - started, 3))
    selection = read_json(RunLayout(run_dir).selection)
    if selection is not None:  # notebook 03 chose the recipe by cross-validation: say which, in the run record
        run["selection"] = {k: selection[k] for k in ("winner", "choices", "verdict")}
    write_json_atomic(run_json, run)
    index = write_index(run_dir)
    log(f"reports: {index}")


__all__ = ["NOTEBOOKS_DIR", "NotebookFailed", "ensure_kernel", "list_notebooks", "run_pipeline",
           "select_notebooks"]
