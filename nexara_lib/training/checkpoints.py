"""Crash-safe training checkpoints: an interrupted ``train_sequence_model`` resumes where it stopped.

After every epoch whose loss is finite, ``ResumableCheckpoint`` writes into
``<out_dir>/checkpoint/``:

- ``epoch-NNNN.weights.h5``: model weights and optimizer state (step counter included,
  so the learning-rate schedule continues where it was);
- ``best-NNNN.npz``: the best weights so far (what early stopping restores), when they changed;
- ``state.json``: the commit point, written last with write-then-rename. It names the two
  files above, the epoch logs so far, the early-stopping and class-gap counters, a
  fingerprint of the configuration and data, and how the random state of the next epoch
  is obtained (``random_state``).

A crash at any moment leaves the previous ``state.json`` and the files it names intact;
files of an uncommitted epoch are ignored and cleaned up. A NaN/inf epoch is never
committed, so the last good checkpoint survives a divergence. A checkpoint whose
fingerprint differs from the new run (other parameters, other data) is discarded, never
resumed.

Random state is not saved but re-derived: ``EpochRandomState`` reseeds every generator an
epoch draws from (Python, NumPy, the model's ``keras.random.SeedGenerator``s, which
``save_weights`` does not keep; nothing in a fit draws from TensorFlow's global seed) from (run seed, epoch)
alone when the epoch begins, and
``shuffle_order`` gives each epoch's order of the training clips the same way. So epoch e
draws the same numbers whether its process started at epoch 0 or resumed at e, whichever
earlier epoch the last commit was: kill + resume trains exactly as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nexara_lib.io import atomic_path, read_json, to_jsonable, write_json_atomic

logger = logging.getLogger("nexara.training")

STATE_FILE = "state.json"
# how an epoch's random state is obtained; recorded in every commit (a checkpoint written under another
# scheme still resumes, but its resumed epochs draw other numbers than its own run would have)
RANDOM_SCHEME = "reseeded from (seed, epoch) at every epoch begin"
SHUFFLE_STREAM, GLOBAL_STREAM, FIRST_SEED_GENERATOR_STREAM = 0, 1, 2  # independent streams of one epoch


def training_fingerprint(config: Mapping[str, Any], arrays) -> str:
    """sha1 of the training configuration and the bytes of every array (data, labels)."""
    digest = hashlib.sha1(json.dumps(to_jsonable(dict(config)), sort_keys=True).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A seed in [1, 2**31) that depends on the run seed, the (0-based) epoch and the stream number only."""
    return 1 + int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0]) % (2**31 - 1)


def shuffle_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch ``epoch`` (0-based) visits the ``n`` training clips."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, SHUFFLE_STREAM])).permutation(n)


def seed_generator_states(model: keras.Model) -> list:
    """The state variables of the model's ``keras.random.SeedGenerator``s (Dropout, GaussianNoise, ...).

    They are in ``model.variables`` but not in ``model.weights``, so ``save_weights`` does not keep them.
    """
    states, seen = [], set()
    for variable in model.variables:
        if variable.name == "seed_generator_state" and id(variable) not in seen:
            seen.add(id(variable))
            states.append(variable)
    return states


class CheckpointState:
    """What a resumed run needs: the committed epoch, its logs and counters, and its weight files."""

    def __init__(self, directory: Path, data: dict):
        self.directory = directory
        self.data = data

    @property
    def epochs_done(self) -> int:
        return int(self.data["epochs_done"])

    @property
    def rows(self) -> list[dict]:
        return list(self.data["rows"])

    @property
    def training_done(self) -> bool:
        return bool(self.data.get("training_done", False))

    def restore_model(self, model: keras.Model) -> None:
        """Weights and optimizer state of the committed epoch (the optimizer must be built)."""
        model.load_weights(self.directory / self.data["weights_file"])

    def best_weights(self) -> list[np.ndarray] | None:
        name = self.data.get("best_file")
        if not name:
            return None
        with np.load(self.directory / name) as stored:
            return [stored[f"w{i}"] for i in range(len(stored.files))]


def load_checkpoint(directory: str | Path, fingerprint: str) -> CheckpointState | None:
    """The committed checkpoint in ``directory`` if it belongs to this run, else None.

    A checkpoint of another configuration or other data is removed (with a log line) so it
    can never be mixed into this run.
    """
    directory = Path(directory)
    data = read_json(directory / STATE_FILE)
    if data is None:
        if directory.exists():
            shutil.rmtree(directory)  # only uncommitted files: nothing to resume
        return None
    if data.get("fingerprint") != fingerprint:
        logger.warning("checkpoint in %s was written with other parameters or data; starting a fresh run", directory)
        shutil.rmtree(directory)
        return None
    missing = [data[k] for k in ("weights_file", "best_file") if data.get(k) and not (directory / data[k]).exists()]
    if missing:
        logger.warning("checkpoint in %s lacks %s; starting a fresh run", directory, missing)
        shutil.rmtree(directory)
        return None
    return CheckpointState(directory, data)


class EpochRandomState(keras.callbacks.Callback):
    """Reseeds, when an epoch begins, every generator the epoch draws from, from (run seed, epoch) alone.

    Python ``random``, NumPy's global generator and each of the model's ``SeedGenerator``s (its
    own stream, counter back to 0). TensorFlow's global seed is left as the session set it: nothing in a
    fit draws from it, and resetting it clears TensorFlow's kernel cache (every epoch 3.4x slower).
    Place it first, so callbacks that draw at epoch begin draw from the new state. The shuffle order is
    ``shuffle_order``
    (``run_steps.epoch_batches`` feeds the clips in it).

    Args:
        seed: the run seed.
        previous: the checkpoint this run resumed from, or None (its scheme is checked).
    """

    def __init__(self, seed: int, previous: CheckpointState | None = None):
        super().__init__()
        self.seed = int(seed)
        self.seed_generators: int | None = None  # how many the model has (known once an epoch began)
        self._previous = previous

    def on_train_begin(self, logs=None):
        recorded = (self._previous.data.get("random_state") or {}) if self._previous is not None else None
        if recorded is not None and recorded.get("scheme") != RANDOM_SCHEME:
            logger.warning(
                "checkpoint in %s was written with another random-state scheme (%s); the resumed epochs "
                "draw other random numbers than an uninterrupted run would have",
                self._previous.directory,
                recorded.get("scheme", "none recorded"),
            )

    def on_epoch_begin(self, epoch, logs=None):
        # Not keras.utils.set_random_seed: its tf.random.set_seed clears TensorFlow's kernel cache, which made every
        # epoch 3.4x slower (benchmarks/bench_training). Nothing in a fit draws from TensorFlow's global seed: Keras
        # ops are stateless, seeded by the model's SeedGenerators, reset below; the session seeded TF once.
        global_seed = epoch_seed(self.seed, epoch, GLOBAL_STREAM)
        random.seed(global_seed)
        np.random.seed(global_seed)
        states = seed_generator_states(self.model)
        for i, state in enumerate(states):
            state.assign(
                np.array(
                    [epoch_seed(self.seed, epoch, FIRST_SEED_GENERATOR_STREAM + i), 0], dtype=np.dtype(state.dtype)
                )
            )
        self.seed_generators = len(states)

    def state(self, epochs_done: int) -> dict:
        """What a commit after ``epochs_done`` epochs records: epoch ``epochs_done`` (0-based) is reseeded from
        (seed, epochs_done) when it begins, so nothing random needs restoring."""
        return {
            "scheme": RANDOM_SCHEME,
            "seed": self.seed,
            "next_epoch": int(epochs_done),
            "seed_generators": self.seed_generators,
            "shuffle": "shuffle_order(seed, epoch)",
        }


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that can continue counting from a checkpoint instead of from zero."""

    def __init__(self, *args, resume_from: CheckpointState | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._resume_from = resume_from
        # A checkpoint of a finished fit is never fitted again (so on_train_begin never runs), yet its
        # best epoch and weights are read to save the model: restore them now, not only at train begin.
        self.wait, self.best_epoch = 0, 0
        self.best: float | None = None
        self.best_weights: list[np.ndarray] | None = None
        self._restore()

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._restore()

    def _restore(self) -> None:
        state = self._resume_from
        if state is not None and "early_stopping" in state.data:
            saved = state.data["early_stopping"]
            self.wait = int(saved["wait"])
            self.best = None if saved["best"] is None else float(saved["best"])
            self.best_epoch = int(saved["best_epoch"])
            self.best_weights = state.best_weights()

    def state(self) -> dict:
        return {
            "wait": self.wait,
            "best": None if self.best is None else float(self.best),
            "best_epoch": int(self.best_epoch),
        }


class ResumableCheckpoint(keras.callbacks.Callback):
    """Commits a checkpoint after epochs with a finite loss (see the module docstring).

    Place it after the callbacks whose state it saves (per-class monitor, early stopping).
    A commit writes the whole optimizer state, which costs a noticeable share of a short
    epoch; ``interval_s`` bounds how often that happens (a crash then loses at most that
    much training time).

    Args:
        directory: checkpoint folder (created).
        fingerprint: ``training_fingerprint`` of this run.
        early_stopping: the run's ``ResumableEarlyStopping``.
        monitor: the run's per-class monitor (its critical-gap streak is saved).
        previous: the state this run resumed from, or None.
        interval_s: commit when at least this many seconds passed since the last commit
            (0 = after every epoch).
        random_state: the run's ``EpochRandomState`` (what it does is recorded in each commit).
    """

    def __init__(
        self,
        directory: str | Path,
        fingerprint: str,
        early_stopping: ResumableEarlyStopping,
        monitor,
        previous: CheckpointState | None = None,
        interval_s: float = 0.0,
        random_state: EpochRandomState | None = None,
    ):
        super().__init__()
        if not interval_s >= 0:
            raise ValueError(f"checkpoint interval must be >= 0 seconds, got {interval_s!r}")
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.early_stopping = early_stopping
        self.monitor = monitor
        self.interval_s = float(interval_s)
        self.random_state = random_state
        self.rows: list[dict] = previous.rows if previous else []  # every finite epoch so far
        self._committed = dict(previous.data) if previous else {}
        self.seconds_spent = 0.0
        self.commits = 0
        self.last_good_epoch = previous.epochs_done if previous else 0
        self._last_commit = time.perf_counter()

    def on_train_begin(self, logs=None):
        self._last_commit = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        loss = logs.get("loss")
        if loss is None or not math.isfinite(float(loss)):
            return  # never commit a diverged epoch: the last good checkpoint stays
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        if time.perf_counter() - self._last_commit >= self.interval_s:
            self._commit(epoch, training_done=bool(self.model.stop_training))

    def _commit(self, epoch: int, training_done: bool, with_weights: bool = True) -> None:
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        weights_file = self._committed.get("weights_file")
        if with_weights:
            weights_file = f"epoch-{epoch + 1:04d}.weights.h5"
            self.model.save_weights(self.directory / weights_file)
        best_file = self._committed.get("best_file")
        best_epoch = self.early_stopping.best_epoch
        if self.early_stopping.best_weights is not None and (
            best_file is None or self._committed.get("early_stopping", {}).get("best_epoch") != best_epoch
        ):
            best_file = f"best-{best_epoch + 1:04d}.npz"
            with atomic_path(self.directory / best_file, keep_suffix=True) as tmp:
                # Any: numpy types **kwds against savez's own allow_pickle flag too; the keys here are w0, w1, ...
                arrays: dict[str, Any] = {f"w{i}": w for i, w in enumerate(self.early_stopping.best_weights)}
                np.savez(tmp, **arrays)
        state = {
            "fingerprint": self.fingerprint,
            "epochs_done": epoch + 1,
            "weights_file": weights_file,
            "best_file": best_file,
            "rows": list(self.rows),
            "early_stopping": self.early_stopping.state(),
            "gap_monitor": self.monitor.state(),
            "training_done": training_done,
            "random_state": (
                self.random_state.state(epoch + 1)
                if self.random_state is not None
                else self._committed.get("random_state")
            ),
        }
        write_json_atomic(self.directory / STATE_FILE, state)  # the commit point
        self._committed = state
        self.last_good_epoch = epoch + 1
        keep = {STATE_FILE, weights_file, best_file}
        for path in self.directory.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
        self.commits += 1
        self.seconds_spent += time.perf_counter() - started
        self._last_commit = time.perf_counter()

    def mark_done(self) -> None:
        """Commit the finished fit (early stop, gap stop or last epoch): a rerun skips straight to saving.

        Only the best weights and the history are needed from here on, so the (restored) model
        weights are not written again.
        """
        if self.rows:
            last = int(self.rows[-1]["epoch"]) - 1
            self._commit(last, training_done=True, with_weights=self._committed.get("weights_file") is None)


def remove_checkpoint(directory: str | Path) -> None:
    """Delete the checkpoint folder once the run's final artifacts are written."""
    shutil.rmtree(directory, ignore_errors=True)
