"""Turning a trained Keras head into files an edge runtime runs: TFLite *builtin* ops only.

``builtin_ops_model`` gives the model itself or a clone with every recurrent layer unrolled over the fixed T (Keras
runs an LSTM/GRU as a TF while-loop over a TensorList, which builtin TFLite cannot lower with a dynamic batch);
``write_saved_model`` writes its SavedModel (``serve`` signature, ``(None, T, D)`` float32 in) atomically;
``convert_variant`` converts that SavedModel into one variant (float32, float16, dynamic-range int8) and names the
ops builtin TFLite lacks when there are any. ``nexara_lib.deploy.export`` drives them and writes ``export.json``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from nexara_lib.deploy.head import quiet_stderr


class ExportError(ValueError):
    """An export cannot be written, found, trusted or used for this run (the message says what to do)."""


def first_line(err: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (cut at ``limit`` characters) for an error message of our own."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {line[:limit]}{'…' if len(line) > limit else ''}"


# --- quiet TensorFlow ------------------------------------------------------------------


@contextlib.contextmanager
def quiet_conversion():
    """Silence absl/TensorFlow Python logs and the converter's C++ stderr (MLIR dumps) for a block."""
    names = ("absl", "tensorflow")
    levels = [logging.getLogger(n).level for n in names]
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with quiet_stderr():
            yield
    finally:
        for n, level in zip(names, levels, strict=True):
            logging.getLogger(n).setLevel(level)


def _unroll_config(node) -> int:
    """Set every ``unroll: False`` in a (nested) model config to True; returns how many were set."""
    count = 0
    if isinstance(node, dict):
        if node.get("unroll") is False:
            node["unroll"] = True
            count += 1
        for value in node.values():
            count += _unroll_config(value)
    elif isinstance(node, list):
        for value in node:
            count += _unroll_config(value)
    return count


def builtin_ops_model(model, where: str = "model"):
    """The model TFLite builtins can run: ``model`` itself, or a clone with its recurrent layers unrolled.

    The clone is rebuilt from ``model``'s config and gets its weights through Keras' own weight file (so
    layers that derive state from their weights, like ``Normalization``, are restored as on a load).
    """
    import keras

    config = model.get_config()
    if _unroll_config(config) == 0:
        return model
    try:
        with quiet_conversion():
            clone = type(model).from_config(config)
            with tempfile.TemporaryDirectory(prefix="nexara-unroll-") as tmp:
                weights = Path(tmp) / "head.weights.h5"
                model.save_weights(weights)
                clone.load_weights(weights)
    except Exception as err:
        raise ExportError(
            f"{where}: cannot unroll its recurrent layers for a builtin-ops TFLite export "
            f"({first_line(err)}); recurrent layers need a fixed number of time steps T"
        ) from None
    if not isinstance(clone, keras.Model):
        raise ExportError(f"{where}: rebuilding it from its config gave a {type(clone).__name__}, not a model")
    return clone


def write_saved_model(model, T: int, D: int, final: Path, where: str) -> None:
    """Write a SavedModel serving ``(None, T, D)`` to a temporary folder, then swap it in."""
    import keras

    tmp = final.parent / f".{final.name}.{os.getpid()}.tmp"
    old = final.parent / f".{final.name}.{os.getpid()}.old"
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        with quiet_conversion():
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint(
                "serve",
                fn=lambda x: model(x, training=False),
                input_signature=[keras.InputSpec(shape=(None, T, D), dtype="float32", name="features")],
            )
            archive.write_out(str(tmp), verbose=False)
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"{where}: writing the SavedModel failed ({first_line(err)})") from None
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _missing_ops(err: BaseException) -> list[str]:
    """The TF ops a converter error says builtin TFLite lacks (from its structured errors, else its text)."""
    ops = {
        name
        for e in getattr(err, "errors", None) or ()
        if "ERROR_NEEDS_" in str(e) and (name := str(getattr(getattr(e, "operator", None), "name", None) or ""))
    }
    ops |= set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", str(err)))
    return sorted(ops)


def convert_variant(saved_model: Path, variant: str, where: str) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range int8 weights
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        with quiet_conversion():
            return converter.convert()
    except Exception as err:
        ops = _missing_ops(err)
        if ops:
            raise ExportError(
                f"{where} cannot be exported with TFLite builtin ops only: it uses {', '.join(ops)}, "
                "which LiteRT's builtin kernels lack (Select TF ops are not used: edge runtimes do "
                "not ship them). Replace the layer that uses them with builtin-friendly ops "
                "(keras.ops matmul/add/tanh/sigmoid/softmax/mean...) and retrain, or export another "
                "model from available_models()"
            ) from None
        details = [
            str(e.error_message).strip().splitlines()[0]
            for e in getattr(err, "errors", None) or ()
            if str(getattr(e, "error_message", "")).strip()
        ]
        cause = "; ".join(dict.fromkeys(details))[:400] if details else first_line(err)
        raise ExportError(f"{where}: TFLite conversion ({variant}) failed: {cause}") from None
