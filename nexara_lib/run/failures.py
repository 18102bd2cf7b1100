"""How a notebook of a run ended badly, told in one message: failed, hung, interrupted or stopped by the disk.

``NotebookFailed`` (a cell raised, the kernel died, a cell ran past ``cell_timeout_s``) and
``RunInterrupted`` (Ctrl-C or SIGTERM) carry the notebook, the cell and where its partial notebook is,
so the command line prints one line and no traceback.
"""

from __future__ import annotations

from pathlib import Path

from nexara_lib.run.io_errors import describe, is_operator_error


class NotebookFailed(RuntimeError):
    """A notebook of the pipeline raised; the run stopped after saving what it had.

    Attributes: ``notebook`` (file name), ``cell`` (1-based cell number in the
    source notebook, or None), ``source_line``, ``ename``, ``evalue``,
    ``partial_notebook`` (path of the saved executed notebook) and ``run_dir``.
    """

    def __init__(
        self,
        message: str,
        *,
        notebook: str,
        cell: int | None,
        source_line: str,
        ename: str,
        evalue: str,
        partial_notebook: Path,
        run_dir: Path,
    ):
        super().__init__(message)
        self.notebook, self.cell, self.source_line = notebook, cell, source_line
        self.ename, self.evalue = ename, evalue
        self.partial_notebook, self.run_dir = partial_notebook, run_dir


def first_line(source: str) -> str:
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


def hung(error: BaseException | None) -> bool:
    """A cell that ran past ``cell_timeout_s``, or a kernel that died under it (not a failing cell)."""
    return type(error).__name__ in ("CellTimeoutError", "DeadKernelError")


def describe_failure(notebook: Path, executed: Path, run_dir: Path, err: BaseException) -> tuple[str, dict]:
    """(NotebookFailed message, details) for a notebook that raised ``err``."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        source_line = first_line(err.source)
        cell = _cell_number(notebook, err.source)
        details = {
            "cell": cell,
            "execution_count": err.exec_count,
            "source_line": source_line,
            "ename": err.ename,
            "evalue": err.evalue,
        }
        where = f"cell {cell}" if cell else f"cell #{err.cell_index + 1} of the executed notebook"
        if err.exec_count:
            where += f" (In [{err.exec_count}])"
        head = f"notebook {notebook.name} failed at {where}: {source_line}"
    elif is_operator_error(err):  # papermill could not save the executed notebook: full disk, read-only...
        details = {
            "cell": None,
            "execution_count": None,
            "source_line": "",
            "ename": type(err).__name__,
            "evalue": describe(err),
        }
        head = f"notebook {notebook.name} stopped: the run folder cannot be written"
    else:  # kernel died, timed out, could not start...
        details = {
            "cell": None,
            "execution_count": None,
            "source_line": "",
            "ename": type(err).__name__,
            "evalue": str(err),
        }
        head = f"notebook {notebook.name} could not be executed"
    saved = f"partial notebook: {executed}" if executed.exists() else "no partial notebook was saved"
    kernel_log = run_dir / "logs" / f"{notebook.stem}.kernel.log"
    if details["cell"] is None and kernel_log.exists() and kernel_log.stat().st_size:  # a kernel that died says why
        saved += f"\n  kernel log: {kernel_log}"
    message = (
        f"{head}\n  {details['ename']}: {details['evalue']}\n  {saved}\n  reports: {run_dir / 'reports' / 'index.html'}"
    )
    return message, details


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; ``run.json`` and the partial notebook were saved first.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still does; ``str()`` is the one line to print.
    """

    def __init__(self, notebook: str | None, partial_notebook: Path | None, run_dir: Path | None):
        super().__init__(notebook)
        self.notebook, self.partial_notebook, self.run_dir = notebook, partial_notebook, run_dir

    def __str__(self) -> str:
        where = f" during {self.notebook}" if self.notebook else ""
        saved = (
            f"; partial notebook: {self.partial_notebook}"
            if self.partial_notebook and Path(self.partial_notebook).exists()
            else ""
        )
        again = "; run the same command again to go on (finished notebooks are kept)" if self.run_dir else ""
        return f"interrupted{where}{saved}{again}"
