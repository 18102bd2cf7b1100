"""Fault injection (issue 15): what an operator of a long batch run meets, and how each one ends.

Each numbered fault of the issue ends in a clean, identical rerun or in one line naming what and where.
The faults of the run's process, its disk and its reruns are injected here, on tiny notebooks run by the
real runner (real kernels, real decoder processes, real signals); the others live beside the mechanism
they test:

1. a finished-fit checkpoint resumes ........... tests/test_training_resume.py
2. a corrupt feature cache entry ............... tests/test_cache_integrity.py
3. a truncated model file ...................... tests/test_model_files.py
4. kill -9 of the run: kernel and decoders end . here
5. two runs on one folder ...................... tests/test_run_lock.py
6. kill + resume trains identically ............ tests/test_training_resume.py
7. full disk / read-only output root ........... here
8. a hung cell or silent kernel ................ tests/test_runner.py (cell_timeout_s, one retry)
9. a bad groups CSV ............................ tests/test_groups_csv.py
10. Ctrl-C in one line; reruns keep finished work here
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_runner import _params_file, _write_notebook

from nexara_lib.run import cli, execute, fingerprint, runner
from nexara_lib.run.failures import NotebookFailed, RunInterrupted
from nexara_lib.run.io_errors import RunnerIOError

pytestmark = pytest.mark.slow  # fault injection through the real CLI with real kernels (kill -9, Ctrl-C, full disk)

REPO = Path(__file__).resolve().parents[1]


def _gone(pid: int) -> bool:
    """The process ended (a zombie waiting for a reaper counts as ended: it runs nothing and holds no memory)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _hanging_notebook(folder: Path, pids: Path, children: int = 0) -> Path:
    """01_hangs: writes its kernel's PID (and its spawned children's) to ``pids``, then sleeps, unless
    ``pids`` existed already (a rerun), in which case it finishes at once."""
    return _write_notebook(
        folder / "01_hangs.ipynb",
        "import json, multiprocessing as mp, os, pathlib, time\n"
        f"pids = pathlib.Path({str(pids)!r})\n"
        "if not pids.exists():\n"
        "    ctx = mp.get_context('spawn')\n"
        f"    kids = [ctx.Process(target=time.sleep, args=(300,)) for _ in range({children})]\n"
        "    [k.start() for k in kids]\n"
        "    pids.write_text(json.dumps({'kernel': os.getpid(), 'children': [k.pid for k in kids]}))\n"
        "    time.sleep(300)\n"
        "print('finished')",
    )


def _cli(tmp_path: Path, notebooks: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    """`nexara run` in its own process group (as a terminal would start it), stderr captured."""
    cmd = [
        sys.executable,
        "-m",
        "nexara_lib",
        "run",
        "-f",
        str(_params_file(tmp_path)),
        "--run-dir",
        str(run_dir),
        "--notebooks-dir",
        str(notebooks),
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


# --- fault 4: kill -9 of the run's process group ---------------------------------------------------


def test_killing_the_run_ends_its_kernel_and_every_process_the_kernel_started(tmp_path):
    notebooks, pids, run_dir = tmp_path / "nb", tmp_path / "pids.json", tmp_path / "run"
    _hanging_notebook(notebooks, pids, children=2)
    proc = _cli(tmp_path, notebooks, run_dir)
    try:
        assert _wait_for(pids.exists, 90), proc.stderr.read() if proc.poll() is not None else "kernel never started"
        started = json.loads(pids.read_text())
        tracker = [
            int(p.parent.name)
            for p in Path("/proc").glob("[0-9]*/cmdline")
            if b"resource_tracker" in p.read_bytes()
            and p.parent.name.isdigit()
            and (Path(f"/proc/{p.parent.name}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(started["kernel"]))
        ]
        everyone = [started["kernel"], *started["children"], *tracker]
        assert not any(_gone(pid) for pid in everyone)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole `nexara run` process group, as an operator would
        proc.wait()
        assert _wait_for(lambda: all(_gone(pid) for pid in everyone), 15), (
            f"still running after the run was killed: {[pid for pid in everyone if not _gone(pid)]}"
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in json.loads(pids.read_text()).values() if pids.exists() else []:
            for p in pid if isinstance(pid, list) else [pid]:
                if not _gone(p):
                    os.kill(p, signal.SIGKILL)

    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # what the kill left
    again = _cli(tmp_path, notebooks, run_dir)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "marked interrupted" in out and "stale lock" in out  # the next start says what it found
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok" and run["notebooks"]["01_hangs"]["status"] == "ok"


def test_a_decoder_process_ends_when_its_parent_is_killed(tmp_path):
    """A decoder waiting for work (the real ``_decoder_main``) outlives a killed kernel by at most a second."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing as mp, os, sys, time\n"
        "from nexara_lib.features.local_executor import _decoder_main\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('spawn')\n"
        "    tasks, results = ctx.Queue(), ctx.Queue()\n"
        "    current = ctx.Array('q', [-1], lock=False)\n"
        "    proc = ctx.Process(target=_decoder_main, args=(tasks, results, current, 0, os.getpid()), daemon=True)\n"
        "    proc.start()\n"
        "    print(proc.pid, flush=True)\n"
        "    time.sleep(300)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    decoder = int(parent.stdout.readline())
    try:
        time.sleep(2)  # the decoder is up and blocked on its task queue
        assert not _gone(decoder)
        parent.kill()
        parent.wait()
        assert _wait_for(lambda: _gone(decoder), 10), "the decoder outlived its killed parent"
    finally:
        if not _gone(decoder):
            os.kill(decoder, signal.SIGKILL)


# --- fault 10: Ctrl-C and SIGTERM --------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_the_run_in_one_line_naming_the_partial_notebook(tmp_path, signum):
    notebooks, pids, run_dir = tmp_path / "nb", tmp_path / "pids.json", tmp_path / "run"
    _hanging_notebook(notebooks, pids)
    _write_notebook(notebooks / "02_after.ipynb", "print('must not run')")
    proc = _cli(tmp_path, notebooks, run_dir)
    try:
        assert _wait_for(pids.exists, 90), "kernel never started"
        time.sleep(0.5)
        os.killpg(proc.pid, signum) if signum == signal.SIGINT else proc.send_signal(signum)  # Ctrl-C: the group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    partial = run_dir / "notebooks" / "01_hangs.ipynb"
    assert last.startswith(f"nexara run: interrupted during 01_hangs.ipynb; partial notebook: {partial}"), last
    assert partial.exists()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted" and run["notebooks"]["01_hangs"]["status"] == "interrupted"
    assert run["notebooks"]["02_after"]["status"] == "not run"
    kernel = json.loads(pids.read_text())["kernel"]
    assert _wait_for(lambda: _gone(kernel), 10), "the kernel outlived the interrupted run"


def test_run_interrupted_is_a_keyboard_interrupt_with_one_line():
    err = RunInterrupted("03_training.ipynb", None, None)
    assert isinstance(err, KeyboardInterrupt) and str(err) == "interrupted during 03_training.ipynb"


# --- fault 10: a rerun keeps what finished with the same parameters and inputs --------------------------


def test_a_rerun_keeps_finished_notebooks_and_reruns_what_changed(tmp_path, monkeypatch):
    # The library's code is part of the fingerprint (tested below); pinned here so that an edit of the
    # checkout while this test runs cannot change the outcome.
    monkeypatch.setattr(fingerprint, "code_digest", lambda: "pinned")
    notebooks, runs, data = tmp_path / "nb", tmp_path / "runs.log", tmp_path / "pretrained"
    data.mkdir()
    for name in ("01_a", "02_b"):
        _write_notebook(notebooks / f"{name}.ipynb", f"open({str(runs)!r}, 'a').write('{name}\\n')")
    params, run_dir = [_params_file(tmp_path)], tmp_path / "run"
    counts = lambda: {n: runs.read_text().split().count(n) for n in ("01_a", "02_b")}  # noqa: E731
    quiet = lambda m: None  # noqa: E731

    runner.run_pipeline(params, {"pretrained_dir": str(data)}, run_dir=run_dir, notebooks_dir=notebooks, log=quiet)
    assert counts() == {"01_a": 1, "02_b": 1}
    messages = []
    runner.run_pipeline(
        params, {"pretrained_dir": str(data)}, run_dir=run_dir, notebooks_dir=notebooks, log=messages.append
    )
    assert counts() == {"01_a": 1, "02_b": 1}  # nothing redone
    assert sum("kept" in m for m in messages) == 2
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok" and all(e["status"] == "ok" and e["kept"] for e in run["notebooks"].values())

    runner.run_pipeline(
        params, {"pretrained_dir": str(data)}, notebooks=["02"], run_dir=run_dir, notebooks_dir=notebooks, log=quiet
    )
    assert counts() == {"01_a": 1, "02_b": 2}  # --only names it: it runs
    runner.run_pipeline(
        params, {"pretrained_dir": str(data)}, run_dir=run_dir, notebooks_dir=notebooks, log=quiet, force=True
    )
    assert counts() == {"01_a": 2, "02_b": 3}  # --force
    _write_notebook(notebooks / "02_b.ipynb", f"open({str(runs)!r}, 'a').write('02_b\\n')", "x = 1")
    runner.run_pipeline(params, {"pretrained_dir": str(data)}, run_dir=run_dir, notebooks_dir=notebooks, log=quiet)
    assert counts() == {"01_a": 2, "02_b": 4}  # the notebook changed: it runs, 01 is kept
    (data / "encoder.tflite").write_bytes(b"new input")
    runner.run_pipeline(params, {"pretrained_dir": str(data)}, run_dir=run_dir, notebooks_dir=notebooks, log=quiet)
    assert counts() == {"01_a": 3, "02_b": 5}  # an input folder changed: everything runs
    runner.run_pipeline(
        params, {"pretrained_dir": str(data), "seed": 3}, run_dir=run_dir, notebooks_dir=notebooks, log=quiet
    )
    assert counts() == {"01_a": 4, "02_b": 6}  # other parameters: everything runs


def test_the_fingerprint_covers_the_library_code_and_the_inputs(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "m.py").write_text("x = 1\n")
    before = fingerprint.code_digest(package)
    (package / "sub" / "m.py").write_text("x = 2\n")
    assert fingerprint.code_digest(package) != before
    data = tmp_path / "data"
    (data / "violent").mkdir(parents=True)
    clip = data / "violent" / "a.mp4"
    clip.write_bytes(b"1")
    params = {"data_dir": [str(data)], "output_root": str(tmp_path)}
    assert fingerprint.input_paths(params) == [data]  # where results go is not an input
    first = fingerprint.run_fingerprint(params)
    assert fingerprint.run_fingerprint(params) == first
    clip.write_bytes(b"22")  # a replaced clip
    assert fingerprint.run_fingerprint(params) != first


# --- fault 7: the runner's own file errors ------------------------------------------------------------


def _fail_writes(monkeypatch, name: str, code: int, after: int = 0, times: int = 1):
    """Make the runner's writes of files called ``name`` fail with ``code`` (after ``after`` good ones,
    ``times`` times), as a disk that fills up or turns read-only would."""
    real, seen = execute.write_json_atomic, {"n": 0}  # RunRecord (run.json) writes through it

    def write(path, obj):
        if Path(path).name == name:
            seen["n"] += 1
            if after < seen["n"] <= after + times:
                raise OSError(code, os.strerror(code), str(Path(path).parent / f".{name}.{os.getpid()}.tmp"))
        return real(path, obj)

    monkeypatch.setattr(execute, "write_json_atomic", write)


def test_a_full_disk_under_the_runner_is_one_line_and_recorded_in_run_json(tmp_path, monkeypatch, capsys):
    notebooks = tmp_path / "nb"
    _write_notebook(notebooks / "01_a.ipynb", "x = 1")
    _fail_writes(monkeypatch, "run.json", errno.ENOSPC, after=1)  # the write marking 01 running fails
    code = cli.main(
        [
            "run",
            "-f",
            str(_params_file(tmp_path)),
            "--run-dir",
            str(tmp_path / "run"),
            "--notebooks-dir",
            str(notebooks),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: cannot write {tmp_path / 'run' / 'run.json'}: the disk is full; ")
    assert " free of " in err[0] and "output_root" in err[0]
    run = json.loads((tmp_path / "run" / "run.json").read_text())  # space came back for the record
    assert run["status"] == "failed" and "the disk is full" in run["error"]
    assert run["notebooks"]["01_a"]["status"] == "not run"


def test_a_read_only_output_root_is_one_line_and_creates_nothing(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    notebooks = tmp_path / "nb"
    _write_notebook(notebooks / "01_a.ipynb", "x = 1")
    with pytest.raises(RunnerIOError) as err:
        runner.run_pipeline(
            [_params_file(tmp_path)], run_dir=tmp_path / "ro" / "run", notebooks_dir=notebooks, log=lambda m: None
        )
    assert str(err.value) == (
        f"cannot write {tmp_path / 'ro' / 'run'}: the file system is read-only; "
        "set output_root to a writable folder and run again"
    )
    assert not (tmp_path / "ro").exists()


def test_the_notebooks_own_error_comes_first_when_the_disk_is_full_too(tmp_path, monkeypatch):
    notebooks = tmp_path / "nb"
    _write_notebook(notebooks / "01_boom.ipynb", "raise ValueError('the notebook failed first')")
    _fail_writes(monkeypatch, "run.json", errno.ENOSPC, after=2, times=99)  # every write after the start
    with pytest.raises(NotebookFailed) as err:
        runner.run_pipeline(
            [_params_file(tmp_path)], run_dir=tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None
        )
    lines = str(err.value).splitlines()
    assert lines[0].startswith("notebook 01_boom.ipynb failed at cell 3") and "ValueError" in lines[1]
    assert any(line.strip().startswith("cannot write") and "the disk is full" in line for line in lines[2:])


def test_a_notebook_that_cannot_be_saved_names_the_file_and_the_full_disk(tmp_path, monkeypatch):
    import papermill.engines
    import papermill.execute

    real = papermill.engines.write_ipynb

    def write_ipynb(nb, path, *args, **kwargs):
        if str(path).endswith("01_a.ipynb"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(nb, path, *args, **kwargs)

    monkeypatch.setattr(papermill.engines, "write_ipynb", write_ipynb)
    monkeypatch.setattr(papermill.execute, "write_ipynb", write_ipynb)
    notebooks = tmp_path / "nb"
    _write_notebook(notebooks / "01_a.ipynb", "x = 1")
    with pytest.raises(NotebookFailed) as err:
        runner.run_pipeline(
            [_params_file(tmp_path)], run_dir=tmp_path / "run", notebooks_dir=notebooks, log=lambda m: None
        )
    assert "cannot write" in str(err.value) and "01_a.ipynb: the disk is full" in str(err.value)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed" and "the disk is full" in run["notebooks"]["01_a"]["error"]
