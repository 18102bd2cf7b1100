"""Sequence classifiers over cached frame features, behind one registry.

Every model maps a clip's feature sequence ``(T, D)`` to a 2-way softmax
(index 0 = non-violent, index 1 = violent). Models are registered by name with
``@register_model`` and built with ``create_sequence_model(name, input_shape,
**params)``, the single entry point (timm style). Every model pools time with
the ``TemporalAttention`` layer named ``"temporal_attention"``, so
``attention_model(model)`` gives per-time-step weights for any of them.

No ``Lambda`` layers: custom layers are registered serializable classes, so a
model saves as ``.keras`` and reloads with ``keras.models.load_model`` in safe
mode.
"""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

import keras
from keras import layers, ops

from nexara_lib.registry import Registry

ATTENTION_LAYER_NAME = "temporal_attention"  # diagnostics look the layer up by this name
OUTPUT_LAYER_NAME = "probabilities"
INPUT_NORMALIZATION_NAME = "input_normalization"  # adapted to the training split by training.py

MODEL_REGISTRY = Registry("sequence model")



# --- registry ---------------------------------------------------------------

def register_model(name: str) -> Callable:
    """Decorator that adds a model factory to ``MODEL_REGISTRY`` under ``name``.

    The factory takes ``input_shape`` then keyword-only hyper-parameters with
    defaults; those keyword names are the model's accepted parameters.
    """
    return MODEL_REGISTRY.register(name)


def available_models() -> list[str]:
    """Names of the registered sequence models, sorted."""
    return MODEL_REGISTRY.names()


def _factory(name: str) -> Callable[..., keras.Model]:
    return MODEL_REGISTRY.lookup(name)


def model_param_names(name: str) -> tuple[str, ...]:
    """Hyper-parameter names that model ``name`` accepts.

    Args:
        name: a registered model name.

    Returns:
        The keyword parameter names of the model's factory, in declaration order.
    """
    signature = inspect.signature(_factory(name))
    return tuple(p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY)


def model_defaults(name: str) -> dict:
    """Default hyper-parameters of model ``name`` (a fresh dict)."""
    signature = inspect.signature(_factory(name))
    return {p.name: p.default for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def create_sequence_model(name: str, input_shape: Sequence[int], **params) -> keras.Model:
    """Build a registered sequence classifier.

    Args:
        name: registry name (see ``available_models()``).
        input_shape: ``(T, D)``: time steps and feature size of one clip.
        **params: hyper-parameters the model accepts (see ``model_param_names``);
            anything else is an error rather than being ignored.

    Returns:
        An uncompiled functional ``keras.Model`` with output ``(N, 2)``
        softmax probabilities in float32.
    """
    factory = _factory(name)
    accepted = model_param_names(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} got unknown parameters {unknown}; it accepts {list(accepted)}")
    shape = _check_input_shape(input_shape)
    return factory(shape, **params)


# --- precision --------------------------------------------------------------

# --- argument checks ----------------------------------------------------------

def _check_input_shape(input_shape) -> tuple[int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be (T, D) integers, got {input_shape!r}") from None
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"input_shape must be (T, D) with T >= 1 and D >= 1 (time steps, feature size), got {input_shape!r}")
    return shape


def _check_units(name: str, value, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"model parameter {name!r} must be an integer >= {low}, got {value!r}")
    return value


def _check_units_list(name: str, value) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"model parameter {name!r} must be a non-empty list of positive integers, got {value!r}")
    return [_check_units(f"{name}[{i}]", v) for i, v in enumerate(value)]


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"model parameter {name!r} must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_l2(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"model parameter 'l2' must be a number >= 0, got {value!r}")
    return float(value)


def _regularizer(l2: float):
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
        units: hidden size of the tanh score.
        l2: L2 penalty on ``W`` and ``v``.
    """

    def __init__(self, units: int = 64, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_units("attention_units", units)
        self.l2 = _check_l2(l2)

    def build(self, input_shape):
        feature_dim = int(input_shape[-1])
        reg = _regularizer(self.l2)
        self.w = self.add_weight(name="w", shape=(feature_dim, self.units), initializer="glorot_uniform",
                                 regularizer=reg)
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
        self.max_length = _check_units("max_length", max_length)

    def build(self, input_shape):
        length, dim = input_shape[1], int(input_shape[-1])
        if length is not None and length > self.max_length:
            raise ValueError(f"PositionalEmbedding: sequence length {length} exceeds max_length {self.max_length}")
        self.embeddings = self.add_weight(name="embeddings", shape=(self.max_length, dim),
                                          initializer=keras.initializers.RandomNormal(stddev=0.02))

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
        raise ValueError(f"model {model.name!r} has no layer named {ATTENTION_LAYER_NAME!r}; "
                         "build it with create_sequence_model") from None
    weights = layer.output[1]
    return keras.Model(model.inputs, [model.outputs[0], weights], name=f"{model.name}_with_attention")


# --- shared blocks ----------------------------------------------------------------

def _normalized_inputs(input_shape):
    """The feature input and its per-dimension standardisation (``INPUT_NORMALIZATION_NAME``).

    Backbone features come on very different scales (flow statistics in percent of the frame
    width next to fractions; ReLU activations); training adapts this layer to the training
    split's mean and variance, and the statistics are saved inside the model. Before adaptation
    it is the identity.
    """
    inputs = keras.Input(shape=input_shape, name="features")
    # float32 even under mixed precision: raw feature scales can overflow float16
    return inputs, layers.Normalization(axis=-1, name=INPUT_NORMALIZATION_NAME, dtype="float32")(inputs)


def _compression(x, dense_units: int, dropout: float, l2: float):
    """Per-frame Dense(relu) -> BN -> Dropout(dropout / 2); skipped when dense_units == 0."""
    if dense_units == 0:
        return x
    x = layers.Dense(dense_units, activation="relu", kernel_regularizer=_regularizer(l2), name="compression")(x)
    x = layers.BatchNormalization(name="compression_bn")(x)
    return layers.Dropout(dropout / 2, name="compression_dropout")(x)


def _recurrent(kind: str, units: int, recurrent_dropout: float, l2: float, name: str):
    """A bidirectional LSTM/GRU returning sequences."""
    cell = {"lstm": layers.LSTM, "gru": layers.GRU}[kind]
    # recurrent_dropout 0 keeps the fused cuDNN kernel on GPUs
    rnn = cell(units, return_sequences=True, recurrent_dropout=recurrent_dropout,
               kernel_regularizer=_regularizer(l2), name=f"{name}_{kind}")
    return layers.Bidirectional(rnn, name=name)


def _attention_pool(x, attention_units: int, l2: float):
    context, _ = TemporalAttention(attention_units, l2=l2, name=ATTENTION_LAYER_NAME)(x)
    return context


def _classifier_head(x, head_units: list[int], dropout: float, l2: float):
    """Dense -> BN -> Dropout per entry of head_units (0.8x dropout on the last), then a float32 softmax."""
    for i, units in enumerate(head_units, start=1):
        x = layers.Dense(units, activation="relu", kernel_regularizer=_regularizer(l2), name=f"head_dense_{i}")(x)
        x = layers.BatchNormalization(name=f"head_bn_{i}")(x)
        rate = 0.8 * dropout if i == len(head_units) else dropout
        x = layers.Dropout(rate, name=f"head_dropout_{i}")(x)
    # float32 output: a float16 softmax saturates and breaks the loss under mixed precision
    return layers.Dense(2, activation="softmax", dtype="float32", kernel_regularizer=_regularizer(l2),
                        name=OUTPUT_LAYER_NAME)(x)


def _check_common(dense_units, attention_units, head_units, dropout, l2):
    return (_check_units("dense_units", dense_units, allow_zero=True), _check_units("attention_units", attention_units),
            _check_units_list("head_units", head_units), _check_rate("dropout", dropout), _check_l2(l2))


# --- models -------------------------------------------------------------------------

@register_model("hybrid")
def hybrid(input_shape, *,
           dense_units: int = 512,          # per-frame compression width (0 = no compression)
           lstm_units: int = 96,            # units per direction of BiLSTM 1 and 2
           lstm_units_last: int = 48,       # units per direction of BiLSTM 3
           attention_units: int = 64,       # hidden size of the attention score
           head_units: Sequence[int] = (128, 64),  # dense head widths
           dropout: float = 0.32,           # half after compression, 0.8x on the last dense
           recurrent_dropout: float = 0.0,  # > 0 disables the fused GPU LSTM kernel
           l2: float = 1e-4,                # L2 on every kernel
           ) -> keras.Model:
    """The default model: compression, three BiLSTMs (residual around the second), attention, dense head."""
    dense_units, attention_units, head_units, dropout, l2 = _check_common(
        dense_units, attention_units, head_units, dropout, l2)
    lstm_units = _check_units("lstm_units", lstm_units)
    lstm_units_last = _check_units("lstm_units_last", lstm_units_last)
    recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)

    inputs, x = _normalized_inputs(input_shape)
    x = _compression(x, dense_units, dropout, l2)
    x = _recurrent("lstm", lstm_units, recurrent_dropout, l2, "bilstm_1")(x)
    x = layers.BatchNormalization(name="bilstm_1_bn")(x)
    y = _recurrent("lstm", lstm_units, recurrent_dropout, l2, "bilstm_2")(x)
    y = layers.BatchNormalization(name="bilstm_2_bn")(y)
    # residual: both sides are (T, 2 * lstm_units), so no projection is needed
    x = layers.Add(name="bilstm_2_residual")([x, y])
    x = _recurrent("lstm", lstm_units_last, recurrent_dropout, l2, "bilstm_3")(x)
    x = layers.BatchNormalization(name="bilstm_3_bn")(x)
    x = _attention_pool(x, attention_units, l2)
    return keras.Model(inputs, _classifier_head(x, head_units, dropout, l2), name="hybrid")


def _two_layer_rnn(kind: str, input_shape, dense_units, lstm_units, lstm_units_last, attention_units, head_units,
                   dropout, recurrent_dropout, l2, name) -> keras.Model:
    dense_units, attention_units, head_units, dropout, l2 = _check_common(
        dense_units, attention_units, head_units, dropout, l2)
    lstm_units = _check_units("lstm_units", lstm_units)
    lstm_units_last = _check_units("lstm_units_last", lstm_units_last)
    recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)

    inputs, x = _normalized_inputs(input_shape)
    x = _compression(x, dense_units, dropout, l2)
    x = _recurrent(kind, lstm_units, recurrent_dropout, l2, f"bi{kind}_1")(x)
    x = layers.BatchNormalization(name=f"bi{kind}_1_bn")(x)
    x = _recurrent(kind, lstm_units_last, recurrent_dropout, l2, f"bi{kind}_2")(x)
    x = layers.BatchNormalization(name=f"bi{kind}_2_bn")(x)
    x = _attention_pool(x, attention_units, l2)
    return keras.Model(inputs, _classifier_head(x, head_units, dropout, l2), name=name)


def _register_two_layer_rnn(kind: str, name: str, doc: str):
    """Register a two-layer bidirectional ``kind`` ('lstm' or 'gru') model under ``name``."""
    def factory(input_shape, *,
                dense_units: int = 512,          # per-frame compression width (0 = no compression)
                lstm_units: int = 96,            # units per direction of the first layer (GRU units for bigru)
                lstm_units_last: int = 48,       # units per direction of the second layer
                attention_units: int = 64,       # hidden size of the attention score
                head_units: Sequence[int] = (128, 64),  # dense head widths
                dropout: float = 0.32,           # half after compression, 0.8x on the last dense
                recurrent_dropout: float = 0.0,  # > 0 disables the fused GPU kernel
                l2: float = 1e-4,                # L2 on every kernel
                ) -> keras.Model:
        return _two_layer_rnn(kind, input_shape, dense_units, lstm_units, lstm_units_last, attention_units,
                              head_units, dropout, recurrent_dropout, l2, name)

    factory.__name__, factory.__doc__ = name, doc
    return register_model(name)(factory)


bilstm = _register_two_layer_rnn("lstm", "bilstm", "Two BiLSTMs, attention pooling, dense head.")
bigru = _register_two_layer_rnn("gru", "bigru", "Two BiGRUs, attention pooling, dense head "
                                               "(an ensemble member that differs from the LSTMs).")


@register_model("conv1d_lstm")
def conv1d_lstm(input_shape, *,
                dense_units: int = 512,          # per-frame compression width (0 = no compression)
                conv_filters: Sequence[int] = (128, 128),  # filters of each Conv1D layer
                kernel_size: int = 3,            # Conv1D window in time steps
                lstm_units: int = 96,            # units of the (unidirectional) LSTM after the convolutions
                attention_units: int = 64,       # hidden size of the attention score
                head_units: Sequence[int] = (128, 64),  # dense head widths
                dropout: float = 0.32,           # half after compression and each conv, 0.8x on the last dense
                recurrent_dropout: float = 0.0,  # > 0 disables the fused GPU kernel
                l2: float = 1e-4,                # L2 on every kernel
                ) -> keras.Model:
    """Conv1D stack over time (local motion patterns), then an LSTM, attention pooling, dense head."""
    dense_units, attention_units, head_units, dropout, l2 = _check_common(
        dense_units, attention_units, head_units, dropout, l2)
    conv_filters = _check_units_list("conv_filters", conv_filters)
    kernel_size = _check_units("kernel_size", kernel_size)
    lstm_units = _check_units("lstm_units", lstm_units)
    recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)

    inputs, x = _normalized_inputs(input_shape)
    x = _compression(x, dense_units, dropout, l2)
    for i, filters in enumerate(conv_filters, start=1):
        # 'same' padding keeps T so attention weights still map to frames
        x = layers.Conv1D(filters, kernel_size, padding="same", activation="relu",
                          kernel_regularizer=_regularizer(l2), name=f"conv_{i}")(x)
        x = layers.BatchNormalization(name=f"conv_{i}_bn")(x)
        x = layers.Dropout(dropout / 2, name=f"conv_{i}_dropout")(x)
    x = layers.LSTM(lstm_units, return_sequences=True, recurrent_dropout=recurrent_dropout,
                    kernel_regularizer=_regularizer(l2), name="lstm")(x)
    x = layers.BatchNormalization(name="lstm_bn")(x)
    x = _attention_pool(x, attention_units, l2)
    return keras.Model(inputs, _classifier_head(x, head_units, dropout, l2), name="conv1d_lstm")


@register_model("transformer")
def transformer(input_shape, *,
                dense_units: int = 512,          # model width: projection of every frame feature
                num_heads: int = 4,              # attention heads per block
                num_blocks: int = 2,             # encoder blocks
                ff_units: int = 0,               # feed-forward width (0 = 2 x dense_units)
                attention_units: int = 64,       # hidden size of the pooling attention score
                head_units: Sequence[int] = (128, 64),  # dense head widths
                dropout: float = 0.32,           # attention/feed-forward dropout; half after the projection
                l2: float = 1e-4,                # L2 on every kernel
                ) -> keras.Model:
    """Small transformer encoder: projection + learned positions, self-attention blocks, attention pooling, head."""
    dense_units, attention_units, head_units, dropout, l2 = _check_common(
        dense_units, attention_units, head_units, dropout, l2)
    if dense_units == 0:
        raise ValueError("model parameter 'dense_units' is the transformer width and must be >= 1, got 0")
    num_heads = _check_units("num_heads", num_heads)
    num_blocks = _check_units("num_blocks", num_blocks)
    ff_units = _check_units("ff_units", ff_units, allow_zero=True) or 2 * dense_units
    reg = _regularizer(l2)

    inputs, x = _normalized_inputs(input_shape)
    x = layers.Dense(dense_units, kernel_regularizer=reg, name="projection")(x)
    x = PositionalEmbedding(input_shape[0], name="positions")(x)
    x = layers.Dropout(dropout / 2, name="projection_dropout")(x)
    for i in range(1, num_blocks + 1):
        # key_dim rounds down; the output projection maps back to dense_units either way
        attended = layers.MultiHeadAttention(num_heads, key_dim=max(1, dense_units // num_heads), dropout=dropout,
                                             kernel_regularizer=reg, name=f"block_{i}_attention")(x, x)
        x = layers.LayerNormalization(name=f"block_{i}_norm_1")(layers.Add(name=f"block_{i}_add_1")([x, attended]))
        ff = layers.Dense(ff_units, activation="relu", kernel_regularizer=reg, name=f"block_{i}_ff_1")(x)
        ff = layers.Dropout(dropout, name=f"block_{i}_ff_dropout")(ff)
        ff = layers.Dense(dense_units, kernel_regularizer=reg, name=f"block_{i}_ff_2")(ff)
        x = layers.LayerNormalization(name=f"block_{i}_norm_2")(layers.Add(name=f"block_{i}_add_2")([x, ff]))
    x = _attention_pool(x, attention_units, l2)
    return keras.Model(inputs, _classifier_head(x, head_units, dropout, l2), name="transformer")
