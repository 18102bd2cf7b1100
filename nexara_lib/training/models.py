"""Sequence classifiers over cached frame features, behind one registry.

Every model maps a clip's feature sequence ``(T, D)`` to a 2-way softmax (index 0 = non-violent, index 1 =
violent). Models are registered by name with ``@register_model`` (``nexara_lib.training.model_registry``, which also
states the rules a factory's keywords follow) and built with ``create_sequence_model(name, input_shape, **params)``,
the single entry point (timm style). The sequence models pool time with the ``TemporalAttention`` layer
(``nexara_lib.training.layers``), so ``attention_model(model)`` gives their per-time-step weights; the pooled
baselines (``pooled_linear``, ``pooled_mlp``: ``nexara_lib.training.pooled``) pool fixed statistics and have no
attention (``attention_model`` raises ``ValueError``).

A registry entry also says how ``train_sequence_model`` fits the model (``model_fit_kind``): ``"keras"`` (the
training loop: focal loss, early stopping) or ``"closed_form"`` (the entry's ``closed_form`` function solves for the
weights, e.g. ``pooled_linear``'s logistic regression with C chosen on validation).

No ``Lambda`` layers: custom layers are registered serializable classes, so a model saves as ``.keras`` and reloads
with ``keras.models.load_model`` in safe mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from nexara_lib.training.arrays import predict_arrays
from nexara_lib.training.layers import (
    ATTENTION_LAYER_NAME,
    INPUT_NORMALIZATION_NAME,
    OUTPUT_LAYER_NAME,
    PositionalEmbedding,
    TemporalAttention,
    check_l2,
    check_rate,
    check_units,
    check_units_list,
    regularizer,
)
from nexara_lib.training.model_registry import (
    MODEL_REGISTRY,
    ModelEntry,
    available_models,
    model_defaults,
    model_entry,
    model_factory,
    model_fit_kind,
    model_param_names,
    model_params_from_config,
    register_model,
)
from nexara_lib.training.pooled import fit_pooled_linear, pooled_linear, pooled_mlp

__all__ = [  # the registry's names are re-exported: importing this module is what fills the registry
    "MODEL_REGISTRY",
    "ModelEntry",
    "adapt_input_normalization",
    "available_models",
    "create_sequence_model",
    "model_defaults",
    "model_entry",
    "model_fit_kind",
    "model_param_names",
    "model_params_from_config",
    "register_model",
]


def create_sequence_model(name: str, input_shape: Sequence[int], **params) -> keras.Model:
    """Build a registered sequence classifier.

    Args:
        name: registry name (see ``available_models()``).
        input_shape: ``(T, D)``: time steps and feature size of one clip.
        **params: hyper-parameters the model accepts (see ``model_param_names``);
            anything else is an error rather than being ignored. Those not given take
            ``model_defaults(name)``.

    Returns:
        An uncompiled functional ``keras.Model`` with output ``(N, 2)``
        softmax probabilities in float32.
    """
    factory = model_factory(name)
    accepted = model_param_names(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} got unknown parameters {unknown}; it accepts {list(accepted)}")
    shape = _check_input_shape(input_shape)
    return factory(shape, **{**model_defaults(name), **params})


def adapt_input_normalization(model: keras.Model, x_train: np.ndarray) -> None:
    """Set the model's standardisation to the TRAINING split's per-dimension mean and variance.

    The layer standardises what feeds it: the frame features for the sequence models, the pooled
    statistics for the pooled baselines (computed here by the model's own layers up to it). Only the
    un-augmented training clips are used (never validation or test); the statistics are model
    weights, so the saved ``.keras`` file standardises new data the same way. Computed with NumPy
    rather than ``Normalization.adapt`` (which spins up a tf.data pipeline for a two-line job).
    """
    layer = model.get_layer(INPUT_NORMALIZATION_NAME)
    values = x_train
    if layer.input is not model.inputs[0]:  # it standardises derived features (e.g. pooled statistics)
        values = predict_arrays(keras.Model(model.inputs, layer.input), x_train, batch_size=256)
    flat = np.asarray(values, dtype=np.float64).reshape(-1, values.shape[-1])
    layer.set_weights(
        [
            flat.mean(axis=0).astype(np.float32),
            flat.var(axis=0).astype(np.float32),
            np.asarray(len(flat), dtype=np.float32),
        ]
    )
    layer.finalize_state()  # the layer normalises with mean/variance derived from these weights


def _check_input_shape(input_shape) -> tuple[int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be (T, D) integers, got {input_shape!r}") from None
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            f"input_shape must be (T, D) with T >= 1 and D >= 1 (time steps, feature size), got {input_shape!r}"
        )
    return shape


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
    x = layers.Dense(dense_units, activation="relu", kernel_regularizer=regularizer(l2), name="compression")(x)
    x = layers.BatchNormalization(name="compression_bn")(x)
    return layers.Dropout(dropout / 2, name="compression_dropout")(x)


def _recurrent(kind: str, units: int, recurrent_dropout: float, l2: float, name: str):
    """A bidirectional LSTM/GRU returning sequences."""
    cell = {"lstm": layers.LSTM, "gru": layers.GRU}[kind]
    # recurrent_dropout 0 keeps the fused cuDNN kernel on GPUs
    rnn = cell(
        units,
        return_sequences=True,
        recurrent_dropout=recurrent_dropout,
        kernel_regularizer=regularizer(l2),
        name=f"{name}_{kind}",
    )
    return layers.Bidirectional(rnn, name=name)


def _attention_pool(x, attention_units: int, l2: float):
    context, _ = TemporalAttention(attention_units, l2=l2, name=ATTENTION_LAYER_NAME)(x)
    return context


def _classifier_head(x, head_units: Sequence[int], dropout: float, l2: float):
    """Dense -> BN -> Dropout per entry of head_units (0.8x dropout on the last), then a float32 softmax."""
    for i, units in enumerate(head_units, start=1):
        x = layers.Dense(units, activation="relu", kernel_regularizer=regularizer(l2), name=f"head_dense_{i}")(x)
        x = layers.BatchNormalization(name=f"head_bn_{i}")(x)
        rate = 0.8 * dropout if i == len(head_units) else dropout
        x = layers.Dropout(rate, name=f"head_dropout_{i}")(x)
    # float32 output: a float16 softmax saturates and breaks the loss under mixed precision
    return layers.Dense(
        2, activation="softmax", dtype="float32", kernel_regularizer=regularizer(l2), name=OUTPUT_LAYER_NAME
    )(x)


def _check_common(dense_units, attention_units, head_units, dropout, l2):
    return (
        check_units("dense_units", dense_units, allow_zero=True),
        check_units("attention_units", attention_units),
        check_units_list("head_units", head_units),
        check_rate("dropout", dropout),
        check_l2(l2),
    )


# --- models -------------------------------------------------------------------------


@register_model("hybrid")
def hybrid(
    input_shape,
    *,
    dense_units: int,  # per-frame compression width (0 = no compression)
    lstm_units: int,  # units per direction of BiLSTM 1 and 2
    lstm_units_last: int,  # units per direction of BiLSTM 3
    attention_units: int,  # hidden size of the attention score
    head_units: Sequence[int],  # dense head widths
    dropout: float,  # half after compression, 0.8x on the last dense
    recurrent_dropout: float,  # > 0 disables the fused GPU LSTM kernel
    l2: float,  # L2 on every kernel
) -> keras.Model:
    """The default model: compression, three BiLSTMs (residual around the second), attention, dense head."""
    (dense_units, lstm_units, lstm_units_last, attention_units, head_units, dropout, recurrent_dropout, l2) = (
        _check_recurrent_args(
            dense_units, lstm_units, lstm_units_last, attention_units, head_units, dropout, recurrent_dropout, l2
        )
    )
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


def _check_recurrent_args(
    dense_units, lstm_units, lstm_units_last, attention_units, head_units, dropout, recurrent_dropout, l2
) -> tuple:
    """The checked arguments of the recurrent models, in their signature order."""
    dense_units, attention_units, head_units, dropout, l2 = _check_common(
        dense_units, attention_units, head_units, dropout, l2
    )
    return (
        dense_units,
        check_units("lstm_units", lstm_units),
        check_units("lstm_units_last", lstm_units_last),
        attention_units,
        head_units,
        dropout,
        check_rate("recurrent_dropout", recurrent_dropout),
        l2,
    )


def _two_layer_rnn(
    kind: str,
    input_shape,
    dense_units,
    lstm_units,
    lstm_units_last,
    attention_units,
    head_units,
    dropout,
    recurrent_dropout,
    l2,
    name,
) -> keras.Model:
    (dense_units, lstm_units, lstm_units_last, attention_units, head_units, dropout, recurrent_dropout, l2) = (
        _check_recurrent_args(
            dense_units, lstm_units, lstm_units_last, attention_units, head_units, dropout, recurrent_dropout, l2
        )
    )
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

    def factory(
        input_shape,
        *,
        dense_units: int,
        lstm_units: int,
        lstm_units_last: int,
        attention_units: int,
        head_units: Sequence[int],
        dropout: float,
        recurrent_dropout: float,
        l2: float,
    ) -> keras.Model:
        # as ``hybrid``, with two layers: lstm_units (GRU units for bigru) then lstm_units_last
        return _two_layer_rnn(
            kind,
            input_shape,
            dense_units,
            lstm_units,
            lstm_units_last,
            attention_units,
            head_units,
            dropout,
            recurrent_dropout,
            l2,
            name,
        )

    factory.__name__, factory.__doc__ = name, doc
    return register_model(name)(factory)


bilstm = _register_two_layer_rnn("lstm", "bilstm", "Two BiLSTMs, attention pooling, dense head.")
bigru = _register_two_layer_rnn(
    "gru", "bigru", "Two BiGRUs, attention pooling, dense head (an ensemble member that differs from the LSTMs)."
)


@register_model("conv1d_lstm")
def conv1d_lstm(
    input_shape,
    *,
    dense_units: int,  # per-frame compression width (0 = no compression)
    conv_filters: Sequence[int] = (128, 128),  # filters of each Conv1D layer
    kernel_size: int = 3,  # Conv1D window in time steps
    lstm_units: int,  # units of the (unidirectional) LSTM after the convolutions
    attention_units: int,  # hidden size of the attention score
    head_units: Sequence[int],  # dense head widths
    dropout: float,  # half after compression and each conv, 0.8x on the last
    recurrent_dropout: float,  # > 0 disables the fused GPU kernel
    l2: float,  # L2 on every kernel
) -> keras.Model:
    """Conv1D stack over time (local motion patterns), then an LSTM, attention pooling, dense head."""
    dense_units, attention_units, head_units, dropout, l2 = _check_common(
        dense_units, attention_units, head_units, dropout, l2
    )
    conv_filters = check_units_list("conv_filters", conv_filters)
    kernel_size = check_units("kernel_size", kernel_size)
    lstm_units = check_units("lstm_units", lstm_units)
    recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)

    inputs, x = _normalized_inputs(input_shape)
    x = _compression(x, dense_units, dropout, l2)
    for i, filters in enumerate(conv_filters, start=1):
        # 'same' padding keeps T so attention weights still map to frames
        x = layers.Conv1D(
            filters,
            kernel_size,
            padding="same",
            activation="relu",
            kernel_regularizer=regularizer(l2),
            name=f"conv_{i}",
        )(x)
        x = layers.BatchNormalization(name=f"conv_{i}_bn")(x)
        x = layers.Dropout(dropout / 2, name=f"conv_{i}_dropout")(x)
    x = layers.LSTM(
        lstm_units,
        return_sequences=True,
        recurrent_dropout=recurrent_dropout,
        kernel_regularizer=regularizer(l2),
        name="lstm",
    )(x)
    x = layers.BatchNormalization(name="lstm_bn")(x)
    x = _attention_pool(x, attention_units, l2)
    return keras.Model(inputs, _classifier_head(x, head_units, dropout, l2), name="conv1d_lstm")


@register_model("transformer")
def transformer(
    input_shape,
    *,
    dense_units: int,  # model width: projection of every frame feature
    num_heads: int = 4,  # attention heads per block
    num_blocks: int = 2,  # encoder blocks
    ff_units: int = 0,  # feed-forward width (0 = 2 x dense_units)
    attention_units: int,  # hidden size of the pooling attention score
    head_units: Sequence[int],  # dense head widths
    dropout: float,  # attention/feed-forward dropout; half after the projection
    l2: float,  # L2 on every kernel
) -> keras.Model:
    """Small transformer encoder: projection + learned positions, self-attention blocks, attention pooling, head."""
    dense_units, attention_units, head_units, dropout, l2 = _check_common(
        dense_units, attention_units, head_units, dropout, l2
    )
    if dense_units == 0:
        raise ValueError("model parameter 'dense_units' is the transformer width and must be >= 1, got 0")
    num_heads = check_units("num_heads", num_heads)
    num_blocks = check_units("num_blocks", num_blocks)
    ff_units = check_units("ff_units", ff_units, allow_zero=True) or 2 * dense_units
    reg = regularizer(l2)

    inputs, x = _normalized_inputs(input_shape)
    x = layers.Dense(dense_units, kernel_regularizer=reg, name="projection")(x)
    x = PositionalEmbedding(input_shape[0], name="positions")(x)
    x = layers.Dropout(dropout / 2, name="projection_dropout")(x)
    for i in range(1, num_blocks + 1):
        # key_dim rounds down; the output projection maps back to dense_units either way
        attended = layers.MultiHeadAttention(
            num_heads,
            key_dim=max(1, dense_units // num_heads),
            dropout=dropout,
            kernel_regularizer=reg,
            name=f"block_{i}_attention",
        )(x, x)
        x = layers.LayerNormalization(name=f"block_{i}_norm_1")(layers.Add(name=f"block_{i}_add_1")([x, attended]))
        ff = layers.Dense(ff_units, activation="relu", kernel_regularizer=reg, name=f"block_{i}_ff_1")(x)
        ff = layers.Dropout(dropout, name=f"block_{i}_ff_dropout")(ff)
        ff = layers.Dense(dense_units, kernel_regularizer=reg, name=f"block_{i}_ff_2")(ff)
        x = layers.LayerNormalization(name=f"block_{i}_norm_2")(layers.Add(name=f"block_{i}_add_2")([x, ff]))
    x = _attention_pool(x, attention_units, l2)
    return keras.Model(inputs, _classifier_head(x, head_units, dropout, l2), name="transformer")


# --- pooled baselines (nexara_lib.training.pooled) ---------------------------------------

register_model("pooled_linear", closed_form=fit_pooled_linear)(pooled_linear)
register_model("pooled_mlp")(pooled_mlp)
