"""Every registered sequence model, built tiny: shapes, probabilities, save/reload, attention (or its clear absence
in the pooled baselines); where defaults come from."""

import keras
import numpy as np
import pytest

from nexara_lib import runtime
from nexara_lib.config import SCHEMA
from nexara_lib.training import layers, models

T, D, N = 6, 10, 8

# tiny sizes for every hyper-parameter any model might take; each model gets the ones it accepts
TINY = {
    "dense_units": 8,
    "lstm_units": 4,
    "lstm_units_last": 4,
    "attention_units": 4,
    "head_units": [8, 4],
    "conv_filters": [8, 8],
    "num_heads": 2,
    "ff_units": 8,
    "pooled_hidden_units": 4,
}
# the pooled baselines summarise time with fixed statistics: no attention layer, by design
WITHOUT_ATTENTION = {"pooled_linear", "pooled_mlp"}


def tiny_params(name):
    return {k: v for k, v in TINY.items() if k in models.model_param_names(name)}


pytestmark = pytest.mark.usefixtures("float32_policy")


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, T, D)).astype("float32")
    y = np.eye(2, dtype="float32")[np.arange(N) % 2]
    return x, y


def test_registry_holds_the_spec_models():
    assert {"hybrid", "bilstm", "bigru", "conv1d_lstm", "transformer", "pooled_linear", "pooled_mlp"} <= set(
        models.available_models()
    )
    assert {name: models.model_fit_kind(name) for name in WITHOUT_ATTENTION} == {
        "pooled_linear": "closed_form",
        "pooled_mlp": "keras",
    }
    assert models.model_fit_kind("hybrid") == "keras"


# The hybrid (the default) and a pooled model train in `make test`; the other recurrent ones in `make test-slow`.
FAST_MODELS = ("hybrid", "pooled_linear", "pooled_mlp")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in FAST_MODELS else pytest.mark.slow) for n in models.available_models()]
)
def test_model_trains_saves_and_reloads(name, batch, tmp_path):
    x, y = batch
    keras.utils.set_random_seed(0)
    model = models.create_sequence_model(name, (T, D), **tiny_params(name))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)), (
        "train step changed nothing"
    )

    probs = model.predict(x, verbose=0)
    assert probs.shape == (N, 2)
    assert probs.dtype == np.float32
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), probs, rtol=0, atol=1e-6)

    if name in WITHOUT_ATTENTION:  # what the diagnostics gallery catches to fall back to uniform weights
        with pytest.raises(ValueError, match=layers.ATTENTION_LAYER_NAME):
            layers.attention_model(reloaded)
        return
    # attention weights: one per time step, a distribution over time, from the reloaded model too
    probs_again, weights = layers.attention_model(reloaded).predict(x, verbose=0)
    np.testing.assert_allclose(probs_again, probs, atol=1e-6)
    assert weights.shape == (N, T)
    assert np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", models.available_models())
def test_model_has_no_lambda_layers_and_a_float32_output(name):
    model = models.create_sequence_model(name, (T, D), **tiny_params(name))
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    if name not in WITHOUT_ATTENTION:
        assert model.get_layer(layers.ATTENTION_LAYER_NAME) is not None
    assert model.output.dtype == "float32"
    assert model.layers[-1].name == models.OUTPUT_LAYER_NAME  # predict_proba, ensembles and TTA read it


def test_hybrid_follows_the_spec_layout():
    model = models.create_sequence_model("hybrid", (20, 60))
    assert model.get_layer("compression").units == 512
    assert [model.get_layer(f"bilstm_{i}").forward_layer.units for i in (1, 2, 3)] == [96, 96, 48]
    assert model.get_layer("bilstm_1").forward_layer.recurrent_dropout == 0
    assert isinstance(model.get_layer("bilstm_2_residual"), keras.layers.Add)
    assert [model.get_layer(f"head_dense_{i}").units for i in (1, 2)] == [128, 64]
    assert model.get_layer("compression_dropout").rate == pytest.approx(0.16)
    assert model.get_layer("head_dropout_1").rate == pytest.approx(0.32)
    assert model.get_layer("head_dropout_2").rate == pytest.approx(0.8 * 0.32)
    assert model.get_layer("compression").kernel_regularizer.l2 == pytest.approx(1e-4)
    assert model.get_layer("temporal_attention").units == 64


def test_unknown_model_name_lists_the_registry():
    with pytest.raises(ValueError, match="unknown sequence model .resnet.; available") as err:
        models.create_sequence_model("resnet", (T, D))
    assert "hybrid" in str(err.value)


def test_unknown_parameter_is_an_error():
    with pytest.raises(ValueError, match="lstm_unit"):
        models.create_sequence_model("hybrid", (T, D), lstm_unit=8)
    with pytest.raises(ValueError, match="lstm_units_last"):
        models.create_sequence_model("transformer", (T, D), lstm_units_last=8)


@pytest.mark.parametrize("bad", [(T,), (0, D), ("a", D), None])
def test_bad_input_shape_is_an_error(bad):
    with pytest.raises(ValueError, match="input_shape"):
        models.create_sequence_model("bilstm", bad)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"dropout": 1.0}, "dropout"),
        ({"head_units": []}, "head_units"),
        ({"lstm_units": 0}, "lstm_units"),
        ({"l2": -1.0}, "l2"),
    ],
)
def test_bad_hyper_parameter_values_are_errors(kwargs, key):
    with pytest.raises(ValueError, match=key):
        models.create_sequence_model("hybrid", (T, D), **kwargs)


def test_configure_precision_modes():
    assert runtime.configure_precision("off") == "float32"
    assert runtime.configure_precision("on") == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    import tensorflow as tf

    expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    assert runtime.configure_precision("auto") == expected
    with pytest.raises(ValueError, match="mixed precision"):
        runtime.configure_precision("fp16")


def test_mixed_precision_model_keeps_a_float32_softmax(batch):
    x, y = batch
    runtime.configure_precision("on")
    model = models.create_sequence_model("hybrid", (T, D), **tiny_params("hybrid"))
    assert model.get_layer("compression").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    probs, weights = layers.attention_model(model).predict(x, verbose=0)
    assert probs.dtype == np.float32 and weights.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-3)


def test_attention_model_needs_the_attention_layer():
    inputs = keras.Input((T, D))
    plain = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="temporal_attention"):
        layers.attention_model(plain)


def test_temporal_attention_weights_follow_the_scores():
    # with W = identity-like and v picking feature 0, the step with the largest feature 0 gets the most weight
    layer = layers.TemporalAttention(units=1)
    x = np.zeros((1, 4, 2), dtype="float32")
    x[0, 2, 0] = 3.0
    layer.build(x.shape)
    layer.w.assign(np.array([[1.0], [0.0]], dtype="float32"))
    layer.v.assign(np.array([[5.0]], dtype="float32"))
    context, weights = layer(x)
    weights = keras.ops.convert_to_numpy(weights)[0]
    assert int(np.argmax(weights)) == 2
    # the context is the weighted sum of the time steps
    np.testing.assert_allclose(keras.ops.convert_to_numpy(context)[0], (weights[:, None] * x[0]).sum(0), atol=1e-6)


@pytest.mark.parametrize("name", models.available_models())
def test_run_parameter_defaults_come_from_the_schema(name):
    defaults = models.model_defaults(name)
    assert list(defaults) == list(models.model_param_names(name))
    for key, value in defaults.items():
        if key in SCHEMA:
            assert value == SCHEMA[key].default
    if "head_units" in defaults:
        defaults["head_units"].append(1)  # a fresh copy: the schema's list is not shared
        assert models.model_defaults(name)["head_units"] == SCHEMA["head_units"].default


def test_registration_keeps_one_owner_per_default():
    def owns_a_schema_default(input_shape, *, dropout: float = 0.5):
        raise AssertionError("never built")

    def lacks_a_default(input_shape, *, dropout: float, kernel_size: int):
        raise AssertionError("never built")

    with pytest.raises(TypeError, match="'dropout' is a run parameter"):
        models.register_model("owns_a_schema_default")(owns_a_schema_default)
    with pytest.raises(TypeError, match="'kernel_size' is not a run parameter"):
        models.register_model("lacks_a_default")(lacks_a_default)
    assert not {"owns_a_schema_default", "lacks_a_default"} & set(models.available_models())
