"""Running a classifier head: a window batch ``(N, T, D)`` of frame features in, ``(N,)`` p(violent) out.

Two interchangeable heads with the same surface (``T``, ``D``, ``variant``, ``predict``):

- ``KerasHead``: the trained ``.keras`` model itself (the reference the exports are checked against),
  called through one ``tf.function`` traced for any batch size.
- ``TFLiteHead``: an exported ``.tflite`` file run by the LiteRT interpreter
  (``ai_edge_litert.interpreter.Interpreter``). The interpreter is resized (batch dimension only) when
  the number of windows changes, so batch 1 and batch 9 both run on the same file.

Input checks raise ``ValueError`` saying the expected ``(T, D)`` and what came. A failure *while scoring*
raises ``HeadError`` (file and cause): the caller records an error state for those windows, never a
probability. p(violent) is column 1 of the model's 2-way softmax (``nexara_lib.labels``: 1 = violent).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

VIOLENT_COLUMN = 1  # index of p(violent) in the 2-way softmax
_STDERR_LOCK = threading.RLock()


class HeadError(RuntimeError):
    """The runtime failed while scoring windows: no probability exists for them (record an error state)."""


def quiet_tensorflow() -> None:
    """Fewer C++ and absl log lines from TensorFlow (only effective before TensorFlow is first imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 (C++ logs of TensorFlow/LiteRT: MLIR dumps, delegate notices) to a
    scratch file for a block. Process-wide: keep the block short; threads take turns (else one could
    restore another's scratch file as stderr)."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    yield
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, 2)
        finally:
            os.close(saved)


quiet_tensorflow()  # before TensorFlow's first import, when the deploy package comes first


def head_input_shape(shape, where: str) -> tuple[int, int]:
    """``(T, D)`` from a model input shape ``(None, T, D)``; ``ValueError`` naming ``where`` otherwise."""
    dims = tuple(shape)
    if len(dims) != 3 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in dims[1:]):
        raise ValueError(
            f"{where}: a head takes one input of shape (N, T, D) with fixed T and D, "
            f"got input shape {dims}; export a model from create_sequence_model"
        )
    return int(dims[1]), int(dims[2])


def check_windows(x, T: int, D: int, where: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(N, T, D)`` array, or ``ValueError`` naming the expected (T, D)."""
    try:
        arr = np.ascontiguousarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{where}: windows must be a numeric (N, T, D) = (N, {T}, {D}) array, "
            f"could not read them as float32 ({err})"
        ) from None
    if arr.ndim != 3 or arr.shape[1:] != (T, D):
        raise ValueError(
            f"{where}: expected windows of shape (N, T, D) = (N, {T}, {D}), got shape {arr.shape}; "
            "the features must come from the run's backbone and window length"
        )
    return arr


def _probabilities(out: np.ndarray, where: str) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim != 2 or out.shape[1] != 2:
        raise HeadError(f"{where}: expected a (N, 2) softmax output, got shape {out.shape}")
    return np.asarray(out[:, VIOLENT_COLUMN], dtype=np.float32)


class KerasHead:
    """The trained Keras model as a head (the parity reference).

    Args:
        model_or_path: a ``keras.Model`` mapping ``(N, T, D)`` to a 2-way softmax, or the path of a
            ``.keras`` file saved by this library (loaded in safe mode).
    """

    variant = "keras"

    def __init__(self, model_or_path):
        quiet_tensorflow()
        import keras
        import tensorflow as tf

        if isinstance(model_or_path, keras.Model):
            self.model, self.path = model_or_path, None
        else:
            from nexara_lib.training.model_files import load_sequence_model

            self.path = Path(model_or_path)
            if not self.path.is_file():
                raise ValueError(f"Keras head: model file {self.path} does not exist; give the run's .keras model")
            try:
                self.model = load_sequence_model(self.path)
            except Exception as err:
                raise ValueError(
                    f"Keras head: cannot load {self.path} ({type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}); is it a .keras file "
                    "saved by this library?"
                ) from None
        self.where = f"Keras head {self.path or self.model.name}"
        if len(self.model.inputs) != 1:
            raise ValueError(f"{self.where}: a head takes exactly one input, the model has {len(self.model.inputs)}")
        self.T, self.D = head_input_shape(self.model.inputs[0].shape, self.where)
        model = self.model
        self._call = tf.function(
            lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, self.T, self.D], tf.float32)]
        )
        # Trace once now, with TensorFlow's Python logger quiet: every head wraps the same lambda, so a few heads in
        # a row would otherwise print TensorFlow's "retracing" warning into the reports (the signature is fixed).
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")
        try:
            self._call(tf.zeros([1, self.T, self.D], tf.float32))
        finally:
            logger.setLevel(level)

    def predict(self, x) -> np.ndarray:
        """p(violent) of each window: ``x`` ``(N, T, D)`` -> ``(N,)`` float32 (empty for N == 0)."""
        arr = check_windows(x, self.T, self.D, self.where)
        if len(arr) == 0:
            return np.empty(0, dtype=np.float32)
        try:
            out = self._call(arr).numpy()
        except Exception as err:
            raise HeadError(
                f"{self.where} failed on {len(arr)} windows: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}"
            ) from err
        return _probabilities(out, self.where)


class TFLiteHead:
    """An exported ``.tflite`` head run by the LiteRT interpreter.

    Args:
        path: the ``.tflite`` file (``export.load_export`` checks it against ``export.json`` first).
        num_threads: interpreter CPU threads.
        variant: what the file is ("float32", "float16", "int8"); default: taken from a
            ``head-<variant>.tflite`` name, else "tflite".
    """

    def __init__(self, path, num_threads: int = 2, variant: str = ""):
        quiet_tensorflow()
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.where = f"TFLite head {self.path}"
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"{self.where}: num_threads must be an integer >= 1, got {num_threads!r}")
        self.num_threads = num_threads
        stem = self.path.stem
        self.variant = variant or (stem.split("-", 1)[1] if stem.startswith("head-") else "tflite")
        if not self.path.is_file():
            raise ValueError(f"{self.where}: the file does not exist; run `nexara export RUN_DIR`")
        try:
            with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
                self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
                self._interpreter.allocate_tensors()
        except Exception as err:
            raise ValueError(
                f"{self.where}: LiteRT cannot load it ({type(err).__name__}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                "the file is damaged or not a TFLite model: re-export it"
            ) from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{self.where}: a head has one input and one output, the file has {len(inputs)} and {len(outputs)}"
            )
        self._input, self._output = inputs[0], outputs[0]
        if self._input["dtype"] != np.float32:
            raise ValueError(
                f"{self.where}: a head takes float32 windows, the file's input is {np.dtype(self._input['dtype']).name}"
            )
        signature = [None if int(d) < 0 else int(d) for d in self._input.get("shape_signature", self._input["shape"])]
        self.T, self.D = head_input_shape(signature, self.where)
        self._batch = int(self._input["shape"][0])
        self._lock = threading.Lock()  # one interpreter is not safe to share between threads

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._batch = -1  # unknown until the resize succeeds
            self._interpreter.resize_tensor_input(self._input["index"], [n, self.T, self.D], strict=True)
            self._interpreter.allocate_tensors()
            self._batch = n

    def predict(self, x) -> np.ndarray:
        """p(violent) of each window: ``x`` ``(N, T, D)`` -> ``(N,)`` float32 (empty for N == 0).

        Raises:
            ValueError: ``x`` is not ``(N, T, D)`` windows of this head's T and D.
            HeadError: the interpreter failed (the message names the file and the cause).
        """
        arr = check_windows(x, self.T, self.D, self.where)
        if len(arr) == 0:
            return np.empty(0, dtype=np.float32)
        with self._lock:
            try:
                self._resize(len(arr))
                self._interpreter.set_tensor(self._input["index"], arr)
                self._interpreter.invoke()
                out = self._interpreter.get_tensor(self._output["index"])
            except Exception as err:
                self._batch = -1  # resize and re-allocate on the next call
                cause = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise HeadError(f"{self.where} failed on {len(arr)} windows: {type(err).__name__}: {cause}") from err
        return _probabilities(out, self.where)

    def __repr__(self) -> str:
        return f"TFLiteHead({str(self.path)!r}, variant={self.variant!r}, T={self.T}, D={self.D})"
