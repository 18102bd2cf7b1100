"""One notebook of a run: papermill executes it (one more try when it hung), its reports are rendered, and its
entry in ``run.json`` (``RunRecord``, written after every change) says how it went.

``nexara_lib.run.runner`` calls ``execute_notebook`` for each notebook of the pipeline in turn.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nexara_lib.io import write_json_atomic
from nexara_lib.run.failures import NotebookFailed, describe_failure, first_line, hung
from nexara_lib.run.index_page import write_index
from nexara_lib.run.io_errors import RunnerIOError, operator_errors
from nexara_lib.run.kernel import guarded_kernel_manager, kernel_env
from nexara_lib.run.reports import render_reports


def now_iso() -> str:
    """Now, local time with its offset, to the second (how run.json writes times)."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _not_unknown_parameter(record: logging.LogRecord) -> bool:
    # Every resolved parameter is injected (so --set reaches every notebook), and a notebook
    # declares only the keys it shows; papermill would warn once per undeclared key.
    return not record.getMessage().startswith("Passed unknown parameter")


@contextlib.contextmanager
def papermill_logging():
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


def _render(executed: Path, run_dir: Path, entry: dict, log: Callable[[str], Any]) -> None:
    """Render both reports into ``entry``; a rendering problem is logged, never hides the notebook's result."""
    try:
        full, stakeholder = render_reports(executed, run_dir / "reports")
        entry["reports"] = {
            "full": str(full.relative_to(run_dir)),
            "stakeholder": str(stakeholder.relative_to(run_dir)),
        }
    except Exception as err:  # noqa: BLE001 - reports are secondary to the executed notebook
        entry["report_error"] = f"{type(err).__name__}: {err}"
        log(f"  warning: could not render the HTML reports of {executed.name}: {err}")


class RunRecord:
    """``run.json`` of this run, written after every change; the runner's own file errors become
    ``RunnerIOError`` (one line), and a failure is recorded in it while it can still be written."""

    def __init__(self, path: Path, run: dict):
        self.path, self.run = path, run

    def save(self) -> None:
        with operator_errors(self.path):
            write_json_atomic(self.path, self.run)

    def try_save(self) -> str | None:
        """Save; on a file error return its one-line description instead of raising."""
        try:
            self.save()
        except RunnerIOError as err:
            return str(err)
        return None


def execute_notebook(
    notebook: Path,
    entry: dict,
    run_dir: Path,
    injected: dict,
    params,
    kernel: str,
    record: RunRecord,
    number: int,
    total: int,
    log: Callable[[str], Any],
) -> None:
    """Run one notebook (one more try if it hung), render its reports; raise NotebookFailed if it failed."""
    import papermill  # imported here: listing notebooks or checking params should stay fast

    executed = run_dir / "notebooks" / notebook.name
    kernel_log = run_dir / "logs" / f"{notebook.stem}.kernel.log"  # the kernel process's own output
    entry.update(
        status="running",
        started_at=now_iso(),
        executed=str(executed.relative_to(run_dir)),
        kernel_log=str(kernel_log.relative_to(run_dir)),
    )
    record.save()
    log(f"[{number}/{total}] {notebook.name} ...")
    started = time.monotonic()
    error: BaseException | None = None
    try:
        for attempt in (1, 2):
            try:
                with kernel_env(), papermill_logging():
                    papermill.execute_notebook(
                        str(notebook),
                        str(executed),
                        parameters=injected,
                        cwd=str(run_dir),
                        kernel_name=kernel,
                        log_output=True,
                        progress_bar=True,
                        execution_timeout=params["cell_timeout_s"],
                        kernel_manager_class=guarded_kernel_manager(kernel_log),
                    )
                error = None
            except Exception as err:  # noqa: BLE001 - recorded, then raised as NotebookFailed below
                error = err
            if attempt == 1 and hung(error):
                # A cell past cell_timeout_s or a kernel that died: known papermill/nbclient hangs (a lost
                # reply) pass on a rerun, so the notebook gets one more try, recorded in run.json.
                entry["retried"] = f"{type(error).__name__}: {first_line(str(error))}"
                log(f"  {notebook.name}: {entry['retried']}; running the notebook once more")
                continue
            break
    except BaseException:  # Ctrl-C or SIGTERM: the caller records the run and says where the partial notebook is
        entry.update(
            status="interrupted",
            duration_s=round(time.monotonic() - started, 3),
            error="interrupted (Ctrl-C or SIGTERM)",
        )
        raise
    entry["duration_s"] = round(time.monotonic() - started, 3)
    if executed.exists():
        _render(executed, run_dir, entry, log)
    if error is None:
        entry["status"] = "ok"
        record.save()
        try:  # the index as it stands, so each report's link back to it works while later notebooks run
            write_index(run_dir)
        except OSError as err:  # the final index write at the end of the run reports a persistent problem
            log(f"  warning: could not update reports/index.html: {err}")
        log(f"  ok in {entry['duration_s']:.1f}s")
        return
    message, details = describe_failure(notebook, executed, run_dir, error)
    entry.update(
        status="failed",
        failed_cell=details,
        error=f"{details['ename']}: {details['evalue']}"
        + (f" (cell {details['cell']}: {details['source_line']})" if details["cell"] else ""),
    )
    unsaved = record.try_save()  # the notebook's own error comes first, a full disk is said after it
    if unsaved:
        message += f"\n  {unsaved}"
    raise NotebookFailed(
        message,
        notebook=notebook.name,
        partial_notebook=executed,
        run_dir=run_dir,
        **{k: details[k] for k in ("cell", "source_line", "ename", "evalue")},
    ) from error
