"""Study units fanned out: worker processes and Ray tasks give the same unit results as the sequential
run, resume whatever executor ran a unit, and a failing unit stops the study naming it (tiny real models)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_training import TINY_CONFIG, burst_clips

from nexara_lib.training.study import Pool, plan_study, run_recipe_study, run_studies
from nexara_lib.training.study_units import StudyExecution, StudyUnitError

ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_ENV = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
}
UNIT_CONFIG = {**TINY_CONFIG, "epochs": 3, "warmup_epochs": 1, "augment_factor": 1, "tensorboard": False}
CONFIGS = {"default": UNIT_CONFIG, "pooled_linear": {**UNIT_CONFIG, "model": "pooled_linear"}}
# what may differ between two runs of the same unit: how long it took and on how many threads
NOT_RESULTS = ("seconds", "seconds_per_epoch", "cpu_seconds", "threads")


def tiny_pool(n_groups: int = 8, per_group: int = 4, shift: float = 0.0) -> Pool:
    x, y = burst_clips(n_groups * per_group, seed=3)
    order = np.argsort(y, kind="stable")  # groups are single-label
    groups = np.repeat([f"rec{i}" for i in range(n_groups)], per_group)
    ids = [f"clip{i:03d}" for i in range(len(y))]
    return Pool(x[order] + shift, y[order], groups, ids, is_train=np.ones(len(y), dtype=bool))


def unit_results(folder: Path) -> dict:
    """{unit folder: unit.json without its timings} of every finished unit under ``folder``."""
    out = {}
    for path in sorted(folder.rglob("unit.json")):
        unit = json.loads(path.read_text())
        out[str(path.parent.relative_to(folder))] = {k: v for k, v in unit.items() if k not in NOT_RESULTS}
    return out


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The reference: every unit trained one after another in this process."""
    out = tmp_path_factory.mktemp("sequential")
    study = run_recipe_study(tiny_pool(), CONFIGS, seeds=[1], cv_folds=2, out_dir=out, progress=False)
    return study, out


def test_two_workers_give_the_sequential_results_and_resume_its_units(sequential, tmp_path, capsys):
    reference, ref_dir = sequential
    expected = unit_results(ref_dir)
    assert len(expected) == 4
    # units of 'pooled_linear' already finished (sequentially): the workers train only the others
    out = tmp_path / "workers"
    for unit_json in (ref_dir / "pooled_linear").rglob("unit.json"):
        target = out / unit_json.relative_to(ref_dir)
        target.parent.mkdir(parents=True)
        target.write_text(unit_json.read_text())
    study = run_recipe_study(
        tiny_pool(), CONFIGS, seeds=[1], cv_folds=2, out_dir=out, execution=StudyExecution(workers=2)
    )
    assert unit_results(out) == expected  # same metrics and predictions, byte for byte
    assert study.runs.groupby("config")["reused"].all().to_dict() == {"default": False, "pooled_linear": True}
    columns = ["config", "seed", "fold", "accuracy", "roc_auc", "best_epoch", "epochs_run"]
    assert study.runs[columns].equals(reference.runs[columns])
    assert study.predictions.equals(reference.predictions)
    trained = [json.loads(p.read_text()) for p in (out / "default").rglob("unit.json")]
    assert all(u["threads"] == 1 and u["cpu_seconds"] > 0 for u in trained)  # one thread per worker unit
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split(" ")[0] for line in lines] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]  # k counts finished units
    assert sum("(reused)" in line for line in lines) == 2
    assert all(" seed 1 fold" in line for line in lines)


def test_units_of_several_studies_are_handed_out_together(sequential, tmp_path, capsys):
    _, ref_dir = sequential
    plans = [
        plan_study(tiny_pool(), {"default": UNIT_CONFIG}, [1], 2, tmp_path / "a", tag="a"),
        plan_study(tiny_pool(), {"default": UNIT_CONFIG}, [1], 2, tmp_path / "b", tag="b"),
    ]
    for name in ("a", "b"):  # already finished: each study reuses the reference's units
        for unit_json in (ref_dir / "default").rglob("unit.json"):
            target = tmp_path / name / unit_json.relative_to(ref_dir)
            target.parent.mkdir(parents=True)
            target.write_text(unit_json.read_text())
    studies = run_studies(plans)
    assert [s.runs["reused"].all() for s in studies] == [True, True]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == [
        "[1/4] default | a seed 1 fold1",
        "[2/4] default | a seed 1 fold2",
        "[3/4] default | b seed 1 fold1",
        "[4/4] default | b seed 1 fold2",
    ]


def test_a_failing_unit_stops_the_study_naming_it(tmp_path):
    broken = {"default": {**UNIT_CONFIG, "warmup_epochs": 9}}  # > epochs: train_sequence_model refuses it
    with pytest.raises(StudyUnitError, match=r"study unit default seed 1 fold1 failed: ValueError: .*warmup_epochs"):
        run_recipe_study(tiny_pool(), broken, seeds=[1], cv_folds=2, out_dir=tmp_path, progress=False)
    assert not list(tmp_path.rglob("unit.json"))


def test_executor_parameters_are_in_the_schema():
    from nexara_lib.run.params import resolve_params

    params = resolve_params([], {"synthetic_clips": 8, "study_workers": 3, "study_executor": "ray"})
    assert StudyExecution.from_params(params) == StudyExecution("ray", 3, "auto", "")
    with pytest.raises(Exception, match="study_workers"):
        resolve_params([], {"synthetic_clips": 8, "study_workers": -1})
    with pytest.raises(Exception, match="study_gpus_per_unit"):
        resolve_params([], {"synthetic_clips": 8, "study_gpus_per_unit": "half"})


# --- slow: failures in workers, kill -9, Ray clusters -----------------------------------------


@pytest.mark.slow
def test_a_unit_failing_in_a_worker_stops_the_others_and_leaves_no_process(tmp_path):
    import psutil

    configs = {**CONFIGS, "broken": {**UNIT_CONFIG, "warmup_epochs": 9}}
    with pytest.raises(StudyUnitError, match=r"study unit broken seed 1 fold\d failed: ValueError: .*warmup_epochs"):
        run_recipe_study(tiny_pool(), configs, [1], 2, tmp_path, progress=False, execution=StudyExecution(workers=2))
    time.sleep(0.5)
    children = [p for p in psutil.Process().children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())]
    assert not children  # the workers ended and were reaped: no orphan, no zombie (multiprocessing's tracker stays)


SCRIPT = textwrap.dedent(
    """
    import sys
    from test_study_executors import long_configs, tiny_pool
    from nexara_lib.training.study import run_recipe_study
    from nexara_lib.training.study_units import StudyExecution, StudyUnitError
    if __name__ == "__main__":  # the workers are spawned: they import this file
        try:
            run_recipe_study(tiny_pool(), long_configs(), [1, 2], 2, sys.argv[1], execution=StudyExecution(workers=2))
        except StudyUnitError as err:
            print("STOPPED:", err, flush=True)
            sys.exit(3)
    """
)


def _start_study(tmp_path: Path, out: Path):
    (tmp_path / "study_script.py").write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "study_script.py"), str(out)],
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(condition, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def long_configs() -> dict:
    """Units long enough to be killed mid-training, committing a checkpoint after every epoch."""
    return {
        name: {**cfg, "epochs": 40, "early_stopping_patience": 40, "checkpoint_interval_s": 0.0}
        for name, cfg in CONFIGS.items()
    }


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory) -> dict:
    """The killed study's units trained without interruption, one after another in this process."""
    out = tmp_path_factory.mktemp("long_reference")
    run_recipe_study(tiny_pool(), long_configs(), [1, 2], 2, out, progress=False)
    return unit_results(out)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["driver", "worker"])
def test_kill_9_mid_study_then_rerun_gives_the_sequential_results(tmp_path, victim, long_reference):
    import psutil

    out = tmp_path / "study"
    driver = _start_study(tmp_path, out)
    # killed while units are mid-training: at least one checkpoint, and a unit without unit.json
    _wait_for(lambda: any(out.rglob("checkpoint/*")) and len(list(out.rglob("unit.json"))) < 8)
    children = psutil.Process(driver.pid).children(recursive=True)
    workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]  # not multiprocessing's tracker
    assert len(workers) == 2
    if victim == "driver":
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        psutil.wait_procs(workers, timeout=30)  # they follow their parent instead of training on as orphans
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    else:
        os.kill(workers[0].pid, signal.SIGKILL)
        output, _ = driver.communicate(timeout=120)
        assert driver.returncode == 3, output
        assert "a study worker process died" in output and "run the study again to continue" in output
        psutil.wait_procs(workers, timeout=30)
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finished_before = len(list(out.rglob("unit.json")))
    # the rerun (sequential, in this process) continues from the finished units and the checkpoints
    study = run_recipe_study(tiny_pool(), long_configs(), [1, 2], 2, out, progress=False)
    assert int(study.runs["reused"].sum()) == finished_before
    assert unit_results(out) == long_reference


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(3):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_ray_on_a_four_node_cluster_gives_the_sequential_results(ray_cluster, sequential, tmp_path):
    _, ref_dir = sequential
    assert len(ray_cluster.nodes()) == 4
    run_recipe_study(tiny_pool(), CONFIGS, [1], 2, tmp_path, progress=False, execution=StudyExecution("ray"))
    assert unit_results(tmp_path) == unit_results(ref_dir)


@pytest.mark.slow
def test_a_unit_failing_on_ray_stops_the_study_naming_it(ray_cluster, tmp_path):
    configs = {**CONFIGS, "broken": {**UNIT_CONFIG, "warmup_epochs": 9}}
    with pytest.raises(StudyUnitError, match=r"study unit broken seed 1 fold\d failed: ValueError: .*warmup_epochs"):
        run_recipe_study(tiny_pool(), configs, [1], 2, tmp_path, progress=False, execution=StudyExecution("ray", 2))


@pytest.mark.slow
def test_gpu_share_needs_gpus_on_the_cluster(ray_cluster, tmp_path):
    with pytest.raises(ValueError, match="no GPUs"):
        run_recipe_study(
            tiny_pool(), CONFIGS, [1], 2, tmp_path, progress=False, execution=StudyExecution("ray", 2, 0.5)
        )
