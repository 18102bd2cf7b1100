"""Runner: tiny notebooks executed by papermill end to end (one kernel start per notebook)."""

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nexara_lib.config import ParamError
from nexara_lib.run import kernel, runner
from nexara_lib.run.runner import NotebookFailed, ensure_kernel, list_notebooks, run_pipeline, select_notebooks

PARAMETERS = "run_dir = ''\nparam_files = []\nsynthetic_clips = 0"


def _write_notebook(path: Path, *sources: str) -> Path:
    """A notebook with a `parameters` cell followed by one code cell per source."""
    cells = [new_markdown_cell(f"# {path.stem}"), new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})]
    cells += [new_code_cell(src) for src in sources]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _params_file(folder: Path) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"synthetic_clips": 4, "output_root": str(folder / "outputs")}))
    return path


@pytest.fixture(scope="module")
def ok_run(tmp_path_factory):
    """Two notebooks that succeed; the first checks injection, cwd and the import path."""
    root = tmp_path_factory.mktemp("ok")
    notebooks = root / "notebooks"
    _write_notebook(
        notebooks / "01_first.ipynb",
        "from pathlib import Path\n"
        "from nexara_lib.run.params import params_from_namespace\n"
        "from nexara_lib.stages.headline import record_headline\n"
        "params = params_from_namespace(param_files, globals())",
        "Path('artifacts/from_cwd.txt').write_text(str(params.synthetic_clips))\n"
        "record_headline(run_dir, '01_first', {'test accuracy': {'value': 0.93, 'ci': [0.9, 0.96]}})\n"
        "print('hello from 01', run_dir)",
    )
    _write_notebook(notebooks / "02_second.ipynb", "print('second', 2 + 2)")
    (notebooks / "helper.ipynb").write_text("not a pipeline notebook")  # must be ignored
    messages = []
    run_dir = run_pipeline([_params_file(root)], notebooks_dir=notebooks, log=messages.append)
    return run_dir, root, messages


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """01 succeeds, 02 raises in its third cell, 03 must not run."""
    root = tmp_path_factory.mktemp("fail")
    notebooks = root / "notebooks"
    _write_notebook(notebooks / "01_fine.ipynb", "print('fine')")
    _write_notebook(
        notebooks / "02_boom.ipynb",
        "a = 1",
        "raise ValueError('boom in cell four')\nprint('unreachable')",
        "print('never printed')",
    )
    _write_notebook(notebooks / "03_after.ipynb", "open('artifacts/after.txt', 'w').write('ran')")
    with pytest.raises(NotebookFailed) as info:
        run_pipeline([_params_file(root)], overrides={"seed": 7}, notebooks_dir=notebooks, log=lambda m: None)
    return info.value, root, notebooks


def test_ok_run_records_everything(ok_run):
    run_dir, root, messages = ok_run
    assert run_dir.parent == root / "outputs" and re.fullmatch(r"params-\d{8}-\d{6}", run_dir.name)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok" and run["finished_at"] and run["duration_s"] > 0
    assert list(run["notebooks"]) == ["01_first", "02_second"]
    for stem, entry in run["notebooks"].items():
        assert entry["status"] == "ok" and entry["duration_s"] > 0
        assert (run_dir / entry["executed"]) == run_dir / "notebooks" / f"{stem}.ipynb"
    assert run["param_files"] == [str(root / "params.yaml")] and os.path.isabs(run["param_files"][0])
    assert run["params"]["synthetic_clips"] == 4 and run["param_sources"]["synthetic_clips"].endswith("params.yaml")
    assert "commit" in run["git"] and re.fullmatch(r"[0-9a-f]{40}", run["git"]["commit"])
    assert run["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert run["versions"]["papermill"] and run["versions"]["nbconvert"]
    assert yaml.safe_load((run_dir / "params.yaml").read_text())["synthetic_clips"] == 4
    assert any(str(run_dir / "reports" / "index.html") in m for m in messages)


def test_ok_run_injects_parameters_and_runs_in_the_run_folder(ok_run):
    run_dir, _, _ = ok_run
    assert (run_dir / "artifacts" / "from_cwd.txt").read_text() == "4"  # cwd = run dir, params resolved in kernel
    nb = nbformat.read(run_dir / "notebooks" / "01_first.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"hello from 01 {run_dir}" in printed
    headline = json.loads((run_dir / "artifacts" / "headline.json").read_text())
    assert headline == {"01_first": {"test accuracy": {"value": 0.93, "ci": [0.9, 0.96]}}}


def test_ok_run_writes_two_reports_per_notebook_and_index(ok_run):
    run_dir, _, _ = ok_run
    run = json.loads((run_dir / "run.json").read_text())
    for stem in ("01_first", "02_second"):
        assert run["notebooks"][stem]["reports"] == {
            "full": f"reports/{stem}.full.html",
            "stakeholder": f"reports/{stem}.html",
        }
        assert (run_dir / "reports" / f"{stem}.html").is_file() and (
            run_dir / "reports" / f"{stem}.full.html"
        ).is_file()
    index = (run_dir / "reports" / "index.html").read_text()
    assert 'href="01_first.html"' in index and 'href="02_second.full.html"' in index
    assert "93.0% (95% CI 90.0% to 96.0%)" in index
    assert "helper" not in index


def test_failure_names_notebook_cell_and_partial_notebook(failed_run):
    error, _, _ = failed_run
    text = str(error)
    assert "02_boom.ipynb" in text and "cell 4" in text and "raise ValueError('boom in cell four')" in text
    assert "ValueError: boom in cell four" in text
    assert str(error.partial_notebook) in text
    assert (error.notebook, error.cell, error.ename) == ("02_boom.ipynb", 4, "ValueError")
    nb = nbformat.read(error.partial_notebook, as_version=4)  # saved with the error, stopped there
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.output_type == "error" and o.ename == "ValueError" for o in outputs)
    assert not any("never printed" in o.get("text", "") for o in outputs)


def test_failure_is_recorded_and_later_notebooks_not_run(failed_run):
    error, _, _ = failed_run
    run_dir = error.run_dir
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and run["finished_at"]
    assert run["overrides"] == {"seed": 7} and run["params"]["seed"] == 7
    statuses = {stem: e["status"] for stem, e in run["notebooks"].items()}
    assert statuses == {"01_fine": "ok", "02_boom": "failed", "03_after": "not run"}
    failed = run["notebooks"]["02_boom"]
    assert failed["duration_s"] > 0 and "ValueError: boom in cell four" in failed["error"]
    assert failed["failed_cell"]["cell"] == 4
    assert (run_dir / "reports" / "02_boom.html").is_file()  # reports even for the failed notebook
    assert not (run_dir / "artifacts" / "after.txt").exists()
    index = (run_dir / "reports" / "index.html").read_text()
    assert "not run" in index and "boom in cell four" in index


def test_rerun_of_one_notebook_in_an_existing_run_folder(failed_run):
    error, root, notebooks = failed_run
    run_pipeline(
        [_params_file(root)], notebooks=["3"], run_dir=error.run_dir, notebooks_dir=notebooks, log=lambda m: None
    )
    run = json.loads((error.run_dir / "run.json").read_text())
    statuses = {stem: e["status"] for stem, e in run["notebooks"].items()}
    assert statuses == {"01_fine": "ok", "02_boom": "failed", "03_after": "ok"}  # earlier results kept
    assert run["status"] == "ok"
    assert (error.run_dir / "artifacts" / "after.txt").read_text() == "ran"


@pytest.mark.parametrize(
    "content, overrides",
    [
        ({"synthetic_clips": "four"}, None),
        ({"synthetic_clips": 4, "no_such_key": 1}, None),
        ({"synthetic_clips": 4}, {"dropout": 2.0}),
    ],
)
def test_bad_parameters_fail_before_anything_is_created(tmp_path, content, overrides):
    notebooks = tmp_path / "notebooks"
    _write_notebook(notebooks / "01_x.ipynb", "print(1)")
    params = tmp_path / "bad.yaml"
    params.write_text(yaml.safe_dump({**content, "output_root": str(tmp_path / "outputs")}))
    with pytest.raises(ParamError):
        run_pipeline([params], overrides=overrides, notebooks_dir=notebooks, log=lambda m: None)
    assert not (tmp_path / "outputs").exists()


def test_unknown_notebook_fails_before_anything_is_created(tmp_path):
    notebooks = tmp_path / "notebooks"
    _write_notebook(notebooks / "01_x.ipynb", "print(1)")
    with pytest.raises(ValueError, match="no notebook matches '07'.*01_x"):
        run_pipeline([_params_file(tmp_path)], notebooks=["07"], notebooks_dir=notebooks, log=lambda m: None)
    assert not (tmp_path / "outputs").exists()


def test_list_and_select_notebooks(tmp_path):
    for name in ("02_b.ipynb", "01_a.ipynb", "10_c.ipynb", "scratch.ipynb", "1_bad.ipynb", "03_d.txt"):
        (tmp_path / name).write_text("{}")
    available = list_notebooks(tmp_path)
    assert [p.name for p in available] == ["01_a.ipynb", "02_b.ipynb", "10_c.ipynb"]
    assert [p.name for p in select_notebooks(available, ["10", 2, "01_a"])] == [
        "01_a.ipynb",
        "02_b.ipynb",
        "10_c.ipynb",
    ]
    assert [p.name for p in select_notebooks(available, "02_b.ipynb")] == ["02_b.ipynb"]
    assert select_notebooks(available, None) == available
    with pytest.raises(ValueError, match="no notebook matches 'c'"):
        select_notebooks(available, ["c"])
    with pytest.raises(FileNotFoundError, match="missing"):
        list_notebooks(tmp_path / "missing")


def test_repo_notebooks_dir_is_the_repo_folder():
    assert runner.NOTEBOOKS_DIR == Path(__file__).resolve().parent.parent / "notebooks"


def test_ensure_kernel_installs_once_and_repairs_a_stale_spec(tmp_path, monkeypatch):
    # Isolate Jupyter's search path: only tmp_path/share/jupyter (then the real env dirs).
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "user"))
    writes = []
    real_write = kernel.write_json_atomic
    monkeypatch.setattr(kernel, "write_json_atomic", lambda p, o: writes.append(p) or real_write(p, o))
    name = "nexara-test-kernel"
    spec_file = tmp_path / "share" / "jupyter" / "kernels" / name / "kernel.json"

    assert ensure_kernel(name, prefix=tmp_path) == name
    assert json.loads(spec_file.read_text())["argv"][0] == sys.executable
    assert ensure_kernel(name, prefix=tmp_path) == name
    assert writes == [spec_file]  # second call found it and wrote nothing

    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps({**spec, "argv": ["/elsewhere/python", *spec["argv"][1:]]}))
    ensure_kernel(name, prefix=tmp_path)
    assert json.loads(spec_file.read_text())["argv"][0] == sys.executable and len(writes) == 2


def test_ensure_kernel_rejects_bad_names():
    with pytest.raises(ValueError, match="kernel name"):
        ensure_kernel("bad name/")


def test_a_cell_past_cell_timeout_is_stopped_and_its_notebook_retried_once(tmp_path):
    """A hung cell (a lost papermill/nbclient reply) must not block an overnight run: the cell is stopped
    after cell_timeout_s and the notebook run once more; the retry is recorded."""
    notebooks = tmp_path / "nbs"
    marker = tmp_path / "hung-once"
    _write_notebook(
        notebooks / "01_hangs_once.ipynb",
        f"import pathlib, time\nm = pathlib.Path({str(marker)!r})\n"
        "if not m.exists():\n    m.write_text('x')\n    time.sleep(120)\nprint('done')",
    )
    run_dir = run_pipeline([_params_file(tmp_path)], {"cell_timeout_s": 5}, notebooks_dir=notebooks, log=lambda m: None)
    entry = json.loads((run_dir / "run.json").read_text())["notebooks"]["01_hangs_once"]
    assert entry["status"] == "ok" and entry["retried"].startswith("CellTimeoutError")
    assert entry["duration_s"] < 60


def test_a_cell_that_always_hangs_fails_the_run_after_one_retry(tmp_path):
    notebooks = tmp_path / "nbs"
    _write_notebook(notebooks / "01_hangs.ipynb", "import time\ntime.sleep(120)")
    with pytest.raises(NotebookFailed, match="01_hangs") as err:
        run_pipeline([_params_file(tmp_path)], {"cell_timeout_s": 3}, notebooks_dir=notebooks, log=lambda m: None)
    run = json.loads((err.value.run_dir / "run.json").read_text())
    entry = run["notebooks"]["01_hangs"]
    assert run["status"] == "failed" and entry["status"] == "failed" and "CellTimeoutError" in entry["error"]
    assert entry["retried"].startswith("CellTimeoutError")
