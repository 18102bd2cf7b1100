"""One run per run folder (issue 15, fault 5): a second run refuses at once naming the holder; a stale lock of a
dead process is taken over with a note, and what the dead run left running reads interrupted."""

import json
import subprocess
import sys

import pytest
from test_runner import _params_file, _write_notebook

from nexara_lib.run.lock import LOCK_FILE, RunLocked, mark_interrupted, run_lock
from nexara_lib.run.runner import run_pipeline


@pytest.fixture
def sleeper():
    """A live process that is not us (the holder of a lock)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_holder_makes_a_second_run_refuse_naming_pid_and_start(tmp_path, sleeper):
    holder = {"pid": sleeper.pid, "host": __import__("socket").gethostname(), "started_at": "2026-12-01T09:00:00"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(holder))
    with pytest.raises(RunLocked, match=rf"PID {sleeper.pid} .*started 2026-12-01T09:00:00.*kill {sleeper.pid}"):
        with run_lock(tmp_path, log=lambda m: None):
            pass
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == sleeper.pid  # the holder keeps it


def test_a_stale_lock_is_taken_over_with_a_note_and_released_after(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "started_at": "yesterday"}))
    notes = []
    with run_lock(tmp_path, log=notes.append) as path:
        assert json.loads(path.read_text())["pid"] == __import__("os").getpid()
    assert notes and "stale lock" in notes[0] and "yesterday" in notes[0]
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_cut_short_by_a_crash_is_stale_too(tmp_path):
    (tmp_path / LOCK_FILE).write_text('{"pid": 12')
    with run_lock(tmp_path, log=lambda m: None):
        pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_killed_runs_record_reads_interrupted_on_the_next_start(tmp_path):
    record = {"status": "running", "notebooks": {"01_a": {"status": "ok"}, "02_b": {"status": "running"}}}
    (tmp_path / "run.json").write_text(json.dumps(record))
    notes = []
    run = mark_interrupted(tmp_path / "run.json", notes.append)
    assert run["status"] == "interrupted" and run["notebooks"]["02_b"]["status"] == "interrupted"
    assert run["notebooks"]["01_a"]["status"] == "ok" and "02_b" in notes[0]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"


def test_run_pipeline_refuses_a_folder_in_use_and_changes_nothing_in_it(tmp_path, sleeper):
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    _write_notebook(notebooks / "01_a.ipynb", "x = 1")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).write_text(
        json.dumps({"pid": sleeper.pid, "host": __import__("socket").gethostname(), "started_at": "now"})
    )
    with pytest.raises(RunLocked, match=str(sleeper.pid)):
        run_pipeline([_params_file(tmp_path)], notebooks_dir=notebooks, run_dir=run_dir, log=lambda m: None)
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]


def test_run_pipeline_after_a_killed_run_marks_it_and_holds_the_lock_while_running(tmp_path):
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    _write_notebook(
        notebooks / "01_a.ipynb",
        "import os, json\nlock = json.load(open('run.lock'))\nassert lock['pid'] != os.getpid()",
    )
    _write_notebook(notebooks / "02_b.ipynb", "y = 2")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "started_at": "before"}))
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "status": "running",
                "notebooks": {
                    "01_a": {"notebook": "01_a.ipynb", "status": "ok"},
                    "02_b": {"notebook": "02_b.ipynb", "status": "running"},
                },
            }
        )
    )
    notes = []
    run_pipeline([_params_file(tmp_path)], notebooks=["01"], notebooks_dir=notebooks, run_dir=run_dir, log=notes.append)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok" and run["notebooks"]["01_a"]["status"] == "ok"
    assert run["notebooks"]["02_b"]["status"] == "interrupted"  # kept from the killed run, not left "running"
    assert any("stale lock" in n for n in notes) and not (run_dir / LOCK_FILE).exists()
