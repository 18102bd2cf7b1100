"""Export of trained heads for the edge (nexara_lib.deploy.export/head/parity): every registered model
converts to builtin-ops TFLite and scores like Keras at batch 1 and batch 9; quantized variants stay within
their tolerances; the manifest, its checksums and its checks; clear errors for missing, damaged or foreign
exports, for ops TFLite builtins lack, and for interpreter failures; the parity and latency tables.

Tiny shapes (T=6, D=12, a few units) keep it fast; the weights are perturbed away from their
initialisation (and the output layer scaled until p(violent) spreads) so parity is not trivially met.
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from nexara_lib.deploy.export import (
    EXPORT_FILE,
    SAVED_MODEL_DIR,
    VARIANTS,
    ExportError,
    check_export_matches,
    export_head,
    head_file,
    load_export,
)
from nexara_lib.deploy.head import HeadError, KerasHead, TFLiteHead
from nexara_lib.deploy.parity import (
    LATENCY_COLUMNS,
    PARITY_COLUMNS,
    TOLERANCES,
    head_latency,
    head_parity,
    probe_windows,
)
from nexara_lib.training.layers import INPUT_NORMALIZATION_NAME, OUTPUT_LAYER_NAME
from nexara_lib.training.model_files import save_model_atomic
from nexara_lib.training.models import (
    adapt_input_normalization,
    available_models,
    create_sequence_model,
    model_param_names,
)

T, D = 6, 12
SMALL = {
    "dense_units": 8,
    "lstm_units": 4,
    "lstm_units_last": 3,
    "attention_units": 4,
    "head_units": [6],
    "conv_filters": [5],
    "num_heads": 2,
    "num_blocks": 1,
    "pooled_hidden_units": 5,
}
# big enough that dynamic-range int8 really quantizes (TFLite skips tensors under 1024 values)
LARGE = {
    "hybrid": (
        64,
        {"dense_units": 32, "lstm_units": 16, "lstm_units_last": 16, "attention_units": 16, "head_units": [32]},
    ),
    "pooled_linear": (192, {}),
}


def _windows(n, d=D, seed=1):
    """Feature windows off the unit scale (the input normalisation has work to do): every seed draws
    windows from the same per-dimension distribution, as one backbone's features would be."""
    scale = np.random.default_rng(12345).uniform(0.5, 2.0, d)
    return (np.random.default_rng(seed).normal(1.5, 2.0, (n, T, d)) * scale).astype(np.float32)


def _trained_like(name, d, params, seed=0):
    """A model as training leaves one: normalisation adapted, weights moved away from their initialisation,
    batch-norm statistics those of the data, and a read-out that spreads p(violent) over (0, 1)."""
    keras.utils.set_random_seed(seed)
    model = create_sequence_model(name, (T, d), **{k: v for k, v in params.items() if k in model_param_names(name)})
    x = _windows(32, d, seed=seed + 10)
    adapt_input_normalization(model, x)
    rng = np.random.default_rng(seed)
    for var in model.weights:
        if INPUT_NORMALIZATION_NAME not in var.path:
            w = np.asarray(var.numpy())
            var.assign(
                (
                    rng.uniform(0.5, 1.5, w.shape)
                    if "gamma" in var.path or "variance" in var.path
                    else w + rng.normal(0.0, 0.3, w.shape)
                ).astype(np.float32)
            )
    for layer in model.layers:  # in graph order: each sees the data as recalibrated so far
        if isinstance(layer, keras.layers.BatchNormalization):
            a = keras.Model(model.inputs, layer.input)(x, training=False).numpy()
            axes = tuple(range(a.ndim - 1))
            gamma, beta = layer.get_weights()[:2]
            layer.set_weights([gamma, beta, a.mean(axes), a.var(axes) + 1e-3])
    out = model.get_layer(OUTPUT_LAYER_NAME)
    h = keras.Model(model.inputs, out.input)(x, training=False).numpy().astype(np.float64)
    u = rng.normal(size=h.shape[1])
    u *= 2.0 / ((h - h.mean(0)) @ u).std()  # logit of p(violent): centred, standard deviation 2
    out.set_weights(
        [np.stack([np.zeros_like(u), u], 1).astype(np.float32), np.array([0.0, -h.mean(0) @ u], np.float32)]
    )
    return model


def _trained(name, d, params, epochs=4, seed=0):
    """A model fit for a few epochs to a learnable synthetic task (what quantization error is judged on:
    perturbed random recurrent weights are chaotic and exaggerate it)."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 128)
    pattern = rng.normal(0.0, 1.0, (2, d))[y][:, None, :] * np.sin(np.arange(T) / 2.0)[None, :, None]
    x = _windows(128, d, seed=seed + 30) + 0.5 * pattern.astype(np.float32)
    model = create_sequence_model(name, (T, d), **{k: v for k, v in params.items() if k in model_param_names(name)})
    adapt_input_normalization(model, x)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=False)
    return model


def _tensor_types(path):
    """How many tensors of each dtype name a .tflite file holds."""
    from ai_edge_litert.interpreter import Interpreter

    names = [np.dtype(t["dtype"]).name for t in Interpreter(model_path=str(path)).get_tensor_details()]
    return {n: names.count(n) for n in set(names)}


def _saved(tmp, name, d=D, params=SMALL, fit=False):
    path = Path(tmp) / f"{name}.keras"
    save_model_atomic((_trained if fit else _trained_like)(name, d, params), path)
    return path


def _max_delta_b1_b9(reference, head, x):
    """max |delta p| with every window alone (batch 1), all at once (batch 9), then alone again."""
    want = reference.predict(x)
    alone = np.concatenate([head.predict(x[i : i + 1]) for i in range(len(x))])
    together = head.predict(x)
    again = head.predict(x[:1])
    assert alone.shape == together.shape == (len(x),) and together.dtype == np.float32
    return max(
        float(np.abs(alone - want).max()), float(np.abs(together - want).max()), float(np.abs(again - want[:1]).max())
    )


@pytest.fixture(scope="module")
def hybrid_export(tmp_path_factory):
    """The hybrid model (with BiLSTMs) at a size int8 really quantizes, exported in every variant."""
    tmp = tmp_path_factory.mktemp("hybrid")
    d, params = LARGE["hybrid"]
    model_path = _saved(tmp, "hybrid", d, params, fit=True)
    manifest = export_head(
        model_path, tmp / "export", facts={"backbone": "mobilenet_v1_tflite", "streams": ["rgb"], "threshold": 0.42}
    )
    return model_path, tmp / "export", manifest


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n in ("hybrid", "pooled_linear") else pytest.mark.slow) for n in available_models()],
)
def test_every_model_exports_to_float32_that_scores_like_keras(tmp_path, name, float32_policy):
    model_path = _saved(tmp_path, name)
    manifest = export_head(model_path, tmp_path / "export", variants=["float32"])
    assert set(manifest["variants"]) == {"float32"} and manifest["input"] == {"T": T, "D": D}
    head, _ = load_export(tmp_path / "export", "float32")
    reference = KerasHead(model_path)
    x = _windows(9, seed=5)
    p = reference.predict(x)
    assert p.std() > 0.02, f"{name}: p(violent) barely varies ({p}); the parity test would be trivial"
    delta = _max_delta_b1_b9(reference, head, x)
    print(f"PARITY {name} float32 max|dp|={delta:.3e} p std={p.std():.3f}")
    assert delta <= TOLERANCES["float32"], f"{name}: float32 export differs from Keras by {delta:.3e}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LARGE))
def test_quantized_variants_stay_within_their_tolerances(tmp_path, name, hybrid_export, float32_policy):
    if name == "hybrid":
        model_path, out, manifest = hybrid_export
    else:
        d, params = LARGE[name]
        model_path = _saved(tmp_path, name, d, params)
        out = tmp_path / "export"
        manifest = export_head(model_path, out)
    sizes = {v: manifest["variants"][v]["bytes"] for v in VARIANTS}
    types = {v: _tensor_types(out / head_file(v)) for v in VARIANTS}
    assert "int8" in types["int8"] and "int8" not in types["float32"], f"{name}: int8 quantized nothing: {types}"
    assert "float16" in types["float16"], f"{name}: float16 stored no float16 weights: {types}"
    assert sizes["int8"] < sizes["float32"] and sizes["float16"] < sizes["float32"], sizes
    reference = KerasHead(model_path)
    x = _windows(9, reference.D, seed=6)
    assert reference.predict(x).std() > 0.02
    for variant in VARIANTS:
        head, _ = load_export(out, variant)
        delta = _max_delta_b1_b9(reference, head, x)
        print(f"PARITY {name} {variant} max|dp|={delta:.3e} bytes={sizes[variant]}")
        assert delta <= TOLERANCES[variant], f"{name} {variant}: max |dp| {delta:.3e} > {TOLERANCES[variant]}"


def test_manifest_records_files_checksums_versions_and_facts(hybrid_export):
    model_path, out, manifest = hybrid_export
    assert json.loads((out / EXPORT_FILE).read_text(encoding="utf-8")) == manifest
    assert manifest["format"] == 1
    assert manifest["model"]["file"] == model_path.name
    assert manifest["model"]["sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert manifest["input"] == {"T": T, "D": LARGE["hybrid"][0]}
    assert list(manifest["variants"]) == list(VARIANTS)
    for variant, entry in manifest["variants"].items():
        data = (out / entry["file"]).read_bytes()
        assert entry["file"] == head_file(variant) == f"head-{variant}.tflite"
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
        assert 0 <= entry["probe_max_abs_delta"] <= TOLERANCES[variant]
    assert set(manifest["versions"]) == {"python", "tensorflow", "keras", "ai_edge_litert", "numpy"}
    assert all(manifest["versions"].values())
    assert (manifest["backbone"], manifest["streams"], manifest["threshold"]) == ("mobilenet_v1_tflite", ["rgb"], 0.42)
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".*.old"))


def test_saved_model_serves_any_batch(hybrid_export):
    import tensorflow as tf

    model_path, out, _ = hybrid_export
    served = tf.saved_model.load(str(out / SAVED_MODEL_DIR))
    reference = KerasHead(model_path)
    for n in (1, 5):
        x = _windows(n, reference.D, seed=7)
        got = served.serve(tf.constant(x)).numpy()
        assert got.shape == (n, 2)
        np.testing.assert_allclose(got[:, 1], reference.predict(x), atol=1e-5)


def test_reexport_replaces_files_and_is_deterministic(tmp_path):
    model_path = _saved(tmp_path, "pooled_linear")
    first = export_head(model_path, tmp_path / "export")
    (tmp_path / "export" / head_file("float16")).write_bytes(b"stale")
    second = export_head(model_path, tmp_path / "export", variants=("float32",))
    assert second["variants"]["float32"]["sha256"] == first["variants"]["float32"]["sha256"]
    assert sorted(p.name for p in (tmp_path / "export").glob("*.tflite")) == [head_file("float32")]
    assert set(second["variants"]) == {"float32"}


def test_load_export_refuses_missing_damaged_or_replaced_files(tmp_path, hybrid_export):
    _, out, manifest = hybrid_export
    with pytest.raises(ExportError, match=r"no export in .*nowhere.*nexara export RUN_DIR"):
        load_export(tmp_path / "nowhere")
    with pytest.raises(ExportError, match=r"no 'bf16' variant; exported: \['float16', 'float32', 'int8'\]"):
        load_export(out, "bf16")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    target = copy / head_file("float32")
    size = target.stat().st_size
    target.write_bytes(target.read_bytes()[: size // 2])
    with pytest.raises(ExportError) as err:
        load_export(copy, "float32")
    message = str(err.value)
    assert str(target) in message and f"{size // 2} bytes" in message and f"{size} bytes" in message
    assert "re-export" in message
    replaced = copy / head_file("int8")  # another valid model of the same size: still refused
    replaced.write_bytes(
        (out / head_file("float16")).read_bytes()[: replaced.stat().st_size].ljust(replaced.stat().st_size, b"\0")
    )
    with pytest.raises(ExportError, match="truncated, corrupt or replaced"):
        load_export(copy, "int8")
    (copy / EXPORT_FILE).unlink()
    with pytest.raises(ExportError, match=f"no export in {copy}"):
        load_export(copy, "float16")


def test_check_export_matches_lists_every_mismatch():
    manifest = {
        "format": 1,
        "input": {"T": 16, "D": 1024},
        "variants": {},
        "backbone": "mobilenet_v1_tflite",
        "streams": ["rgb"],
        "threshold": 0.4,
    }
    check_export_matches(
        manifest, {"T": 16, "D": 1024, "streams": ("rgb",), "backbone": "mobilenet_v1_tflite", "not_recorded": 1}
    )
    with pytest.raises(ExportError) as err:
        check_export_matches(manifest, {"T": 8, "D": 1024, "backbone": "vgg19", "streams": ["rgb"]}, where="runs/a")
    message = str(err.value)
    assert "T: export has 16, the run has 8" in message
    assert "backbone: export has 'mobilenet_v1_tflite', the run has 'vgg19'" in message
    assert "D:" not in message and "streams" not in message
    assert "runs/a" in message and "re-run `nexara export RUN_DIR`" in message
    flat = {**manifest["input"], "backbones": ["mobilenet_v1_tflite"]}  # facts given flat, as a caller may
    with pytest.raises(ExportError, match=r"(?s)D: export has 1024, the run has 512.*backbones: export has"):
        check_export_matches(flat, {"D": 512, "backbones": ["flow"]})


@keras.saving.register_keras_serializable(package="nexara_test_export")
class CumulativeProduct(keras.layers.Layer):
    """Uses tf.Cumprod, which TFLite has no builtin kernel for (only Select TF ops)."""

    def call(self, inputs):
        return keras.ops.cumprod(1.0 + 0.01 * keras.ops.tanh(inputs), axis=1)


def test_a_model_needing_a_non_builtin_op_is_refused_clearly(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((T, D))
    x = keras.layers.GlobalAveragePooling1D()(CumulativeProduct()(inputs))
    model_path = tmp_path / "odd.keras"
    save_model_atomic(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)), model_path)
    with pytest.raises(ExportError) as err:
        export_head(model_path, tmp_path / "export")
    message = str(err.value)
    assert str(model_path) in message and "tf.Cumprod" in message and "builtin" in message
    assert len(message) < 700 and "loc(" not in message and "MLIR" not in message
    assert not (tmp_path / "export" / EXPORT_FILE).exists()
    # the op is the reason: with Select TF ops the same SavedModel converts
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "export" / SAVED_MODEL_DIR))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    assert converter.convert()


def test_export_argument_errors(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_head(tmp_path / "missing.keras", tmp_path / "export")
    with pytest.raises(ExportError, match="export_variants"):
        export_head(tmp_path / "missing.keras", tmp_path / "export", variants=["float32", "bf16"])
    with pytest.raises(ExportError, match=r"manifest's own keys \['variants'\]"):
        export_head(tmp_path / "missing.keras", tmp_path / "export", facts={"variants": 1})


def test_heads_check_windows_and_handle_any_batch(hybrid_export):
    model_path, out, _ = hybrid_export
    d = LARGE["hybrid"][0]
    for head in (KerasHead(model_path), load_export(out, "float16")[0]):
        assert (head.T, head.D) == (T, d)
        empty = head.predict(np.zeros((0, T, d), np.float32))
        assert empty.shape == (0,) and empty.dtype == np.float32
        for bad in (np.zeros((2, T + 1, d)), np.zeros((2, T, d - 1)), np.zeros((T, d))):
            with pytest.raises(ValueError, match=re.escape(f"(N, {T}, {d}), got shape {bad.shape}")):
                head.predict(bad)
        p = head.predict(np.zeros((3, T, d), np.float64))
        assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
    assert KerasHead(model_path).variant == "keras" and load_export(out, "int8")[0].variant == "int8"


def test_interpreter_failure_raises_head_error_and_recovers(hybrid_export, monkeypatch):
    _, out, _ = hybrid_export
    head, _ = load_export(out, "float32")
    x = _windows(2, head.D, seed=8)
    before = head.predict(x)

    def broken():
        raise RuntimeError("Node number 7 (FULLY_CONNECTED) failed to invoke.")

    monkeypatch.setattr(head._interpreter, "invoke", broken)
    with pytest.raises(HeadError, match=rf"{head_file('float32')}.*FULLY_CONNECTED"):
        head.predict(x)
    monkeypatch.undo()
    np.testing.assert_array_equal(head.predict(x), before)
    with pytest.raises(ValueError, match="LiteRT cannot load it"):
        TFLiteHead(out / EXPORT_FILE)


def test_parity_and_latency_tables(hybrid_export):
    model_path, out, manifest = hybrid_export
    reference = KerasHead(model_path)
    heads = {v: load_export(out, v)[0] for v in VARIANTS}
    x = _windows(12, reference.D, seed=9)
    y = np.array([0, 1] * 6)
    table = head_parity(reference, heads, x, y, threshold=0.5)
    assert list(table.columns) == list(PARITY_COLUMNS) and list(table["variant"]) == list(VARIANTS)
    assert table["within tolerance"].all() and (table["label agreement"] >= 0.9).all()
    assert np.allclose(table["AUC change"], table["AUC variant"] - table["AUC Keras"])
    assert list(table["tolerance"]) == [TOLERANCES[v] for v in VARIANTS]
    one_class = head_parity(reference, {"float32": heads["float32"]}, x, np.zeros(12, int), threshold=0.5)
    assert np.isnan(one_class.loc[0, "AUC Keras"]) and np.isnan(one_class.loc[0, "AUC variant"])
    with pytest.raises(ValueError, match="12 windows"):
        head_parity(reference, heads, x, y[:5], threshold=0.5)

    probe = probe_windows(reference.model, T, reference.D, n=64)  # drawn like the training features
    assert probe.shape == (64, T, reference.D) and probe.dtype == np.float32
    norm = reference.model.get_layer(INPUT_NORMALIZATION_NAME)
    spread = float(np.sqrt(np.max(norm.variance)))
    np.testing.assert_allclose(probe.mean((0, 1)), np.ravel(norm.mean), atol=0.5 * spread)
    assert np.array_equal(probe, probe_windows(reference.model, T, reference.D, n=64))

    latency = head_latency({"keras": reference, "float32": heads["float32"]}, batches=(1, 9), repeats=3, warmup=1)
    assert list(latency.columns) == list(LATENCY_COLUMNS) and len(latency) == 4
    assert list(zip(latency["variant"], latency["batch"], strict=True)) == [
        ("keras", 1),
        ("keras", 9),
        ("float32", 1),
        ("float32", 9),
    ]
    assert (latency["ms per call"] > 0).all()
    assert np.allclose(latency["ms per window"], latency["ms per call"] / latency["batch"])
