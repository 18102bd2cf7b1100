"""The custom Keras layers of the sequence models, and the argument checks the models share.

``TemporalAttention`` pools a sequence over time and also returns its per-step weights;
``attention_model`` exposes those weights for any registered model, found by the layer name
``ATTENTION_LAYER_NAME``. ``PositionalEmbedding`` gives the transformer learned positions.

Both layers are registered serializable classes (package ``nexara``), so a model that uses
them saves as ``.keras`` and reloads with ``keras.models.load_model`` in safe mode once this
module is imported (``nexara_lib.training.model_files`` does).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

ATTENTION_LAYER_NAME = "temporal_attention"  # diagnostics look the layer up by this name
OUTPUT_LAYER_NAME = "probabilities"  # every model's 2-way softmax
INPUT_NORMALIZATION_NAME = "input_normalization"  # set to the training split by adapt_input_normalization


# --- argument checks ----------------------------------------------------------


def check_units(name: str, value, allow_zero: bool = False) -> int:
    """A layer width (an integer >= 1, or >= 0 with ``allow_zero``); ``name`` goes into the error."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"model parameter {name!r} must be an integer >= {low}, got {value!r}")
    return value


def check_units_list(name: str, value) -> list[int]:
    """A non-empty list of layer widths."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"model parameter {name!r} must be a non-empty list of positive integers, got {value!r}")
    return [check_units(f"{name}[{i}]", v) for i, v in enumerate(value)]


def check_rate(name: str, value) -> float:
    """A dropout-like rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"model parameter {name!r} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_l2(value) -> float:
    """An L2 penalty >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"model parameter 'l2' must be a number >= 0, got {value!r}")
    return float(value)


def regularizer(l2: float):
    """L2 kernel regularizer, or None when ``l2`` is 0."""
    # None rather than L2(0) keeps the saved config minimal when L2 is off
    return keras.regularizers.L2(l2) if l2 > 0 else None


# --- custom layers ----------------------------------------------------------------


@keras.saving.register_keras_serializable(package="nexara")
class TemporalAttention(layers.Layer):
    """Additive attention pooling over time.

    ``score_t = v^T tanh(W h_t + b)``, ``a = softmax_t(score)``,
    ``context = sum_t a_t h_t``. The layer returns ``[context, weights]``;
    models use the context and ``attention_model`` exposes the weights.

    Args:
        units: hidden size of the tanh score (the models pass ``attention_units``).
        l2: L2 penalty on ``W`` and ``v``.
    """

    def __init__(self, units: int, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = check_units("attention_units", units)
        self.l2 = check_l2(l2)

    def build(self, input_shape):
        feature_dim = int(input_shape[-1])
        reg = regularizer(self.l2)
        self.w = self.add_weight(
            name="w", shape=(feature_dim, self.units), initializer="glorot_uniform", regularizer=reg
        )
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
        self.v = self.add_weight(name="v", shape=(self.units, 1), initializer="glorot_uniform", regularizer=reg)

    def call(self, inputs):
        hidden = ops.tanh(ops.matmul(inputs, self.w) + self.b)
        scores = ops.squeeze(ops.matmul(hidden, self.v), axis=-1)  # (N, T)
        # softmax in float32: float16 exponentials overflow under mixed precision
        weights = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        context = ops.sum(inputs * ops.expand_dims(ops.cast(weights, inputs.dtype), -1), axis=1)
        return [context, weights]

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], input_shape[-1]), (input_shape[0], input_shape[1])]

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, l2=self.l2)
        return config


@keras.saving.register_keras_serializable(package="nexara")
class PositionalEmbedding(layers.Layer):
    """Adds a learned embedding per time step (sequence length fixed at build).

    Args:
        max_length: longest sequence the layer accepts.
    """

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = check_units("max_length", max_length)

    def build(self, input_shape):
        length, dim = input_shape[1], int(input_shape[-1])
        if length is not None and length > self.max_length:
            raise ValueError(f"PositionalEmbedding: sequence length {length} exceeds max_length {self.max_length}")
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_length, dim), initializer=keras.initializers.RandomNormal(stddev=0.02)
        )

    def call(self, inputs):
        length = ops.shape(inputs)[1]
        return inputs + ops.expand_dims(self.embeddings[:length], 0)

    def get_config(self):
        config = super().get_config()
        config.update(max_length=self.max_length)
        return config


def attention_model(model: keras.Model) -> keras.Model:
    """Wrap a registered model so it also returns its attention weights.

    Args:
        model: a model from ``create_sequence_model`` (or reloaded from ``.keras``).

    Returns:
        A model sharing ``model``'s layers whose outputs are
        ``(probabilities (N, 2), attention weights (N, T))``; weights sum to 1 over time.
    """
    try:
        layer = model.get_layer(ATTENTION_LAYER_NAME)
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no layer named {ATTENTION_LAYER_NAME!r}; build it with create_sequence_model"
        ) from None
    weights = layer.output[1]
    return keras.Model(model.inputs, [model.outputs[0], weights], name=f"{model.name}_with_attention")
