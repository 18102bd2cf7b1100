"""Checkpoints, resume after kill -9, NaN handling, TensorBoard logs, gap stop and multi-device training."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from test_training import TINY_CONFIG, burst_clips, monitor_case, sign_model

from nexara_lib import runtime
from nexara_lib.training import run_steps
from nexara_lib.training import train as training
from nexara_lib.training.checkpoints import load_checkpoint, training_fingerprint
from nexara_lib.training.monitor import EpochClock, PerClassMonitor

ROOT = Path(__file__).resolve().parents[1]
# the child processes import these test modules by name, as pytest does
SUBPROCESS_ENV = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
}


@pytest.fixture(autouse=True)
def float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def data(seed=0):
    x_train, y_train = burst_clips(48, seed=seed)
    x_val, y_val = burst_clips(24, seed=seed + 1)
    return x_train, y_train, x_val, y_val


RESUME_CONFIG = {
    **TINY_CONFIG,
    "epochs": 8,
    "warmup_epochs": 2,
    "early_stopping_patience": 8,
    "batch_size": 16,
    "checkpoint_interval_s": 0.0,
}  # commit after every epoch


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_without_redoing_epochs(tmp_path):
    arrays = data(0)
    np.savez(tmp_path / "data.npz", *arrays)
    out_dir = tmp_path / "run"
    # a slow epoch clock makes every epoch take >= 1 s so the kill lands mid-run
    script = textwrap.dedent(f"""
        import time, numpy as np
        from nexara_lib.training import run_steps
        from nexara_lib.training import train as training
        from test_training_resume import RESUME_CONFIG
        class Slow(run_steps.EpochClock):
            def on_epoch_end(self, epoch, logs=None):
                time.sleep(1.0)
                super().on_epoch_end(epoch, logs)
        run_steps.EpochClock = Slow
        d = np.load({str(tmp_path / "data.npz")!r})
        training.train_sequence_model(d['arr_0'], d['arr_1'], d['arr_2'], d['arr_3'], RESUME_CONFIG,
                                      {str(out_dir)!r}, verbose=0)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=SUBPROCESS_ENV
    )
    state_file = out_dir / "checkpoint" / "state.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            state = json.loads(state_file.read_text()) if state_file.exists() else {}
            if state.get("epochs_done", 0) >= 3:
                break
            assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()}"
            time.sleep(0.1)
        else:
            pytest.fail("no checkpoint of epoch 3 within 120 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out_dir / "model.keras").exists()
    committed = json.loads(state_file.read_text())["epochs_done"]
    assert 3 <= committed < RESUME_CONFIG["epochs"]

    resumed = training.train_sequence_model(*arrays, RESUME_CONFIG, out_dir, verbose=0)
    assert resumed["resumed_from_epoch"] == committed
    history = resumed["history"]
    assert history["epoch"].tolist() == list(range(1, RESUME_CONFIG["epochs"] + 1))  # each epoch exactly once
    assert not (out_dir / "checkpoint").exists()
    assert (out_dir / "model.keras").exists()

    # the optimizer step counter came back: the learning-rate schedule continues, it does not restart
    fresh = training.train_sequence_model(*arrays, RESUME_CONFIG, tmp_path / "fresh", verbose=0)
    np.testing.assert_allclose(history["learning_rate"], fresh["history"]["learning_rate"], rtol=1e-6)
    # epochs before the kill are the same numbers as an uninterrupted run (same seed)
    pd.testing.assert_series_equal(
        history["loss"][:committed], fresh["history"]["loss"][:committed], check_exact=False, rtol=1e-5
    )


class _NaNAtEpoch3(EpochClock):
    """Pretends the loss diverged in the third epoch (callbacks after it see a NaN loss)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if epoch == 2:
            logs["loss"] = float("nan")
            self.model.stop_training = True


@pytest.mark.slow
def test_nan_loss_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(run_steps, "EpochClock", _NaNAtEpoch3)
    arrays = data(2)
    with pytest.raises(training.TrainingDivergedError, match=r"NaN/inf in epoch 3.*last good checkpoint \(epoch 2\)"):
        training.train_sequence_model(*arrays, RESUME_CONFIG, tmp_path, verbose=0)
    config = training.resolve_training_config(RESUME_CONFIG)
    fingerprint = training_fingerprint({k: v for k, v in config.items() if k not in training.NOT_FINGERPRINTED}, arrays)
    state = load_checkpoint(tmp_path / "checkpoint", fingerprint)
    assert state is not None and state.epochs_done == 2
    assert [row["epoch"] for row in state.rows] == [1, 2]
    assert not (tmp_path / "model.keras").exists()


@pytest.mark.slow
def test_a_checkpoint_of_other_parameters_is_not_resumed(tmp_path, monkeypatch):
    monkeypatch.setattr(run_steps, "EpochClock", _NaNAtEpoch3)
    arrays = data(4)
    with pytest.raises(training.TrainingDivergedError):
        training.train_sequence_model(*arrays, RESUME_CONFIG, tmp_path, verbose=0)
    monkeypatch.undo()
    changed = {**RESUME_CONFIG, "learning_rate": 2e-3, "epochs": 3}
    result = training.train_sequence_model(*arrays, changed, tmp_path, verbose=0)
    assert result["resumed_from_epoch"] == 0 and result["history"]["epoch"].tolist() == [1, 2, 3]


@pytest.mark.slow
def test_tensorboard_logs_hold_the_per_class_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = {**RESUME_CONFIG, "epochs": 2}
    training.train_sequence_model(*data(6), config, tmp_path, verbose=0)
    events = EventAccumulator(str(tmp_path / "tensorboard" / "validation"))
    events.Reload()
    tags = set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])
    assert {"epoch_acc_violent", "epoch_acc_nonviolent", "epoch_class_gap", "epoch_loss"} <= tags, tags


def test_persistent_critical_gap_stops_training():
    x, y = monitor_case(5)  # gap 0.5 on every epoch: critical
    model = sign_model()
    monitor = PerClassMonitor(x, y, gap_warning=0.15, gap_critical=0.25, verbose=0, stop_patience=3)
    monitor.set_model(model)
    model.stop_training = False
    for epoch in range(2):
        monitor.on_epoch_end(epoch, {})
        assert not model.stop_training
    monitor.on_epoch_end(2, {})
    assert model.stop_training and monitor.stopped_epoch == 3
    with pytest.raises(ValueError, match="patience"):
        PerClassMonitor(x, y, stop_patience=-1)


@pytest.mark.slow
def test_gap_stop_is_recorded_as_the_stop_reason(tmp_path):
    x_train, y_train, x_val, y_val = data(8)
    # every validation clip in one class looks like the other: the gap is critical from epoch 1
    config = {**RESUME_CONFIG, "epochs": 6, "gap_stop_patience": 1, "gap_critical": 0.0, "gap_warning": 0.0}
    result = training.train_sequence_model(x_train, y_train, x_val, y_val, config, tmp_path, verbose=0)
    if result["history"]["val_class_gap"].iloc[0] > 0:
        assert result["stop_reason"] == "critical_class_gap" and result["epochs_run"] == 1
    else:  # a perfectly balanced first epoch: no stop is the right answer
        assert result["stop_reason"] != "critical_class_gap"


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from nexara_lib.training import train as training
from test_training import burst_clips
from test_training_resume import RESUME_CONFIG
x_train, y_train = burst_clips(64, seed=10)
x_val, y_val = burst_clips(32, seed=11)
config = {**RESUME_CONFIG, "epochs": 4, "batch_size": 8}
result = training.train_sequence_model(x_train, y_train, x_val, y_val, config, sys.argv[1], verbose=0,
                                       devices=["/cpu:0", "/cpu:1"])
# the same global batch on one device: the same optimisation problem
single = training.train_sequence_model(x_train, y_train, x_val, y_val, {**config, "batch_size": 16},
                                       sys.argv[1] + "-single", verbose=0)
print(json.dumps({"distribution": result["distribution"], "loss": result["history"]["loss"].tolist(),
                  "single_loss": single["history"]["loss"].tolist(),
                  "val_loss": result["history"]["val_loss"].tolist(),
                  "single_val_loss": single["history"]["val_loss"].tolist(),
                  }))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=SUBPROCESS_ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["distribution"] == {
        "strategy": "MirroredStrategy",
        "replicas": 2,
        "batch_size_per_replica": 8,
        "global_batch_size": 16,
    }
    assert all(np.isfinite(out["loss"])) and out["loss"][-1] < out["loss"][0]
    # same seed, same data, same global batch: the mirrored run starts where the one-device run starts. Each
    # replica normalises its half batch with its own BatchNorm statistics (8 clips, not 16) and draws its dropout
    # masks for a half batch, so the first epoch's training loss differs by up to ~25% (seeds 1-7 measured; the
    # old 10% held for seed 7 by luck) while the validation loss after it agrees within ~1.5%
    assert out["loss"][0] == pytest.approx(out["single_loss"][0], rel=0.3)
    assert out["val_loss"][0] == pytest.approx(out["single_val_loss"][0], rel=0.05)
    assert keras.models.load_model(tmp_path / "model.keras") is not None


@pytest.mark.slow
def test_single_device_by_default(tmp_path):
    result = training.train_sequence_model(
        *data(12), {**RESUME_CONFIG, "epochs": 1, "warmup_epochs": 0}, tmp_path, verbose=0
    )
    assert result["distribution"]["replicas"] == 1 and result["distribution"]["global_batch_size"] == 16
    with pytest.raises(ValueError, match="multi_gpu"):
        runtime.distribution_strategy("always")


@pytest.mark.slow
@pytest.mark.parametrize("interval_s, commits", [(0.0, 3 + 1), (1e6, 1)])
def test_checkpoint_interval_bounds_the_number_of_commits(tmp_path, interval_s, commits):
    config = {**RESUME_CONFIG, "epochs": 3, "checkpoint_interval_s": interval_s}
    result = training.train_sequence_model(*data(14), config, tmp_path, verbose=0)
    # every epoch (or none) plus the final commit that marks the fit as done
    assert result["timings"]["checkpoint_commits"] == commits
    assert not (tmp_path / "checkpoint").exists()


@pytest.mark.slow
def test_a_finished_fit_whose_model_was_never_saved_resumes(tmp_path, monkeypatch):
    """A crash (or a full disk) after the fit finished but before model.keras was written leaves a
    'training_done' checkpoint: the rerun must save the same model, not fail on missing state."""
    arrays = data(5)
    clean = training.train_sequence_model(*arrays, RESUME_CONFIG, tmp_path / "clean", verbose=0)

    def disk_full(model, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(training, "save_model_atomic", disk_full)
    with pytest.raises(OSError, match="No space left"):
        training.train_sequence_model(*arrays, RESUME_CONFIG, tmp_path / "run", verbose=0)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["training_done"] is True and not (tmp_path / "run" / "model.keras").exists()
    monkeypatch.undo()
    resumed = training.train_sequence_model(*arrays, RESUME_CONFIG, tmp_path / "run", verbose=0)
    assert resumed["best_epoch"] == clean["best_epoch"] and resumed["epochs_run"] == clean["epochs_run"]
    pd.testing.assert_frame_equal(
        resumed["history"].drop(columns=["epoch_seconds"]), clean["history"].drop(columns=["epoch_seconds"])
    )
    np.testing.assert_allclose(
        training.predict_proba(resumed["model"], arrays[2]),
        training.predict_proba(clean["model"], arrays[2]),
        atol=1e-6,
    )
    assert (tmp_path / "run" / "model.keras").exists() and not (tmp_path / "run" / "checkpoint").exists()


# the smallest registered model with dropout, augmented copies, class weights and a shuffled training set:
# every kind of random draw an epoch makes
RANDOM_CONFIG = {
    **RESUME_CONFIG,
    "model": "pooled_mlp",
    "pooled_hidden_units": 16,
    "dropout": 0.3,
    "epochs": 4,
    "warmup_epochs": 1,
    "augment_factor": 2,
    "class_weights": True,
}
KILL_SCRIPT = """
import os, signal, sys
import numpy as np
from nexara_lib.training import run_steps
from nexara_lib.training import train as training
from test_training_resume import RANDOM_CONFIG
data_file, out_dir, kill_after, last_commit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
class KilledAfterEpoch(run_steps.ResumableCheckpoint):
    # commits epochs up to last_commit only (as a long checkpoint_interval_s would), then kill -9 after epoch kill_after
    def on_epoch_end(self, epoch, logs=None):
        self.interval_s = 0.0 if epoch + 1 <= last_commit else 1e9
        super().on_epoch_end(epoch, logs)
        if epoch + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
run_steps.ResumableCheckpoint = KilledAfterEpoch
d = np.load(data_file)
training.train_sequence_model(d["arr_0"], d["arr_1"], d["arr_2"], d["arr_3"], RANDOM_CONFIG, out_dir, verbose=0)
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Data saved for the child process, and the output folder of one uninterrupted run on it."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    arrays = data(3)
    np.savez(folder / "data.npz", *arrays)
    keras.mixed_precision.set_global_policy("float32")
    result = training.train_sequence_model(*arrays, RANDOM_CONFIG, folder / "run", verbose=0)
    assert result["epochs_run"] == RANDOM_CONFIG["epochs"] and result["best_epoch"] > 2  # weights after the kill
    return folder, arrays, result


def _history_csv(out_dir: Path) -> pd.DataFrame:
    return pd.read_csv(out_dir / "history.csv").drop(columns=["epoch_seconds"])  # wall-clock time, never equal


@pytest.mark.parametrize("kill_after, last_commit", [(2, 2), (3, 2)])
def test_kill_and_resume_trains_exactly_as_an_uninterrupted_run(tmp_path, uninterrupted, kill_after, last_commit):
    """Same seed, same results across a kill -9: the resumed epochs draw the same shuffle order, dropout masks
    and global random numbers as the uninterrupted run, also when the last commit is older than the kill."""
    folder, arrays, straight = uninterrupted
    out_dir = tmp_path / "killed"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(folder / "data.npz"), str(out_dir), str(kill_after), str(last_commit)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=SUBPROCESS_ENV,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = json.loads((out_dir / "checkpoint" / "state.json").read_text())
    assert state["epochs_done"] == last_commit and not (out_dir / "model.keras").exists()
    assert state["random_state"]["next_epoch"] == last_commit and state["random_state"]["seed_generators"] >= 1

    resumed = training.train_sequence_model(*arrays, RANDOM_CONFIG, out_dir, verbose=0)
    assert resumed["resumed_from_epoch"] == last_commit
    # exact: the same float32 operations on the same numbers, in the same order
    pd.testing.assert_frame_equal(_history_csv(out_dir), _history_csv(folder / "run"), check_exact=True)
    for kept, straight_kept in zip(resumed["model"].get_weights(), straight["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(kept, straight_kept)
    saved = [keras.models.load_model(d / "model.keras").get_weights() for d in (out_dir, folder / "run")]
    for kept, straight_kept in zip(*saved, strict=True):
        np.testing.assert_array_equal(kept, straight_kept)


def test_each_epoch_has_its_own_shuffle_order_whatever_epoch_the_pass_starts_at():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1)
    training_set = run_steps.TrainingSet(x, np.arange(10) % 2, 0.5, {0: 1.0, 1: 3.0}, 0.0)

    def epochs(initial_epoch, n_epochs=3):
        batches = list(run_steps.epoch_batches(training_set, 7, 4, initial_epoch, n_epochs).as_numpy_iterator())
        assert [len(b[0]) for b in batches] == [4, 4, 2] * (n_epochs - initial_epoch)
        for clips, targets, weights in batches:  # targets and class weights travel with their clips
            labels = clips[:, 0, 0].astype(int) % 2
            np.testing.assert_array_equal(targets.argmax(axis=1), labels)
            np.testing.assert_array_equal(weights, np.where(labels == 1, 3.0, 1.0))
        return [
            np.concatenate([b[0][:, 0, 0] for b in batches[i : i + 3]]).astype(int).tolist()
            for i in range(0, len(batches), 3)
        ]

    from_start = epochs(0)
    assert all(sorted(order) == list(range(10)) for order in from_start)
    assert len({tuple(order) for order in from_start}) == 3  # reshuffled every epoch
    assert epochs(1) == from_start[1:] and epochs(2) == from_start[2:]


@pytest.mark.slow
def test_a_checkpoint_without_recorded_random_state_still_resumes(tmp_path, monkeypatch, caplog):
    """A checkpoint written before the random state was derived per epoch resumes, with a warning that its
    resumed epochs cannot match the run that wrote it."""
    monkeypatch.setattr(run_steps, "EpochClock", _NaNAtEpoch3)
    arrays = data(3)
    with pytest.raises(training.TrainingDivergedError):
        training.train_sequence_model(*arrays, RANDOM_CONFIG, tmp_path, verbose=0)
    monkeypatch.undo()
    state_file = tmp_path / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    assert state["random_state"]["next_epoch"] == 2
    del state["random_state"]
    state_file.write_text(json.dumps(state))
    with caplog.at_level("WARNING", logger="nexara.training"):
        resumed = training.train_sequence_model(*arrays, RANDOM_CONFIG, tmp_path, verbose=0)
    assert "another random-state scheme (none recorded)" in caplog.text
    assert resumed["resumed_from_epoch"] == 2 and resumed["history"]["epoch"].tolist() == [1, 2, 3, 4]
