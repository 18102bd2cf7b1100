"""The registry of sequence models: names, factories, how each is fit, their hyper-parameters and defaults.

A model is registered with ``@register_model(name)`` on its factory (``nexara_lib.training.models`` registers every
shipped model when it is imported, and is the module to import: ``create_sequence_model`` builds a model from here).

A factory's hyper-parameters are keyword-only. Those that are run parameters (``dropout``, ``lstm_units``, ...) have
no default in the factory: the parameter schema (``nexara_lib.config.SCHEMA``) owns it and ``model_defaults`` fills
it in. Only architecture knobs that are not run parameters (``conv_filters``, ``num_heads``, ...) keep a default in
their factory. Registration checks both rules.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable

import keras

from nexara_lib.config import SCHEMA
from nexara_lib.registry import Registry

MODEL_REGISTRY = Registry("sequence model")
FIT_KINDS = ("keras", "closed_form")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model: its factory and, for a closed-form model, the function that fits it.

    ``closed_form(model, x_train, y_train, x_val, y_val, cfg, alpha, class_weight)`` sets the weights of
    a built model whose standardisation is adapted, and returns a ``pooled.ClosedFormFit`` (one history
    row per candidate, the chosen one); it chooses only on the validation clips it is given.
    """

    factory: Callable[..., keras.Model]
    closed_form: Callable | None = None

    @property
    def fit(self) -> str:
        """'keras' (the training loop) or 'closed_form'."""
        return FIT_KINDS[1] if self.closed_form is not None else FIT_KINDS[0]


def register_model(name: str, closed_form: Callable | None = None) -> Callable:
    """Decorator that adds a model factory to ``MODEL_REGISTRY`` under ``name``.

    The factory takes ``input_shape`` then keyword-only hyper-parameters; those keyword
    names are the model's accepted parameters. A run parameter (a ``SCHEMA`` key) must
    have no default in the factory (the schema owns it); any other keyword must have one.
    ``closed_form``: the model's closed-form fit (see ``ModelEntry``); None = the Keras loop.
    """
    if closed_form is not None and not callable(closed_form):
        raise TypeError(f"model {name!r}: closed_form must be a function or None, got {closed_form!r}")

    def checked(factory: Callable) -> ModelEntry:
        for p in _keyword_parameters(factory):
            if p.name in SCHEMA and p.default is not p.empty:
                raise TypeError(
                    f"model {name!r}: {p.name!r} is a run parameter, so its default lives in "
                    "nexara_lib.config.SCHEMA; remove the default from the factory"
                )
            if p.name not in SCHEMA and p.default is p.empty:
                raise TypeError(
                    f"model {name!r}: {p.name!r} is not a run parameter, so the factory must give it a default"
                )
        return ModelEntry(factory, closed_form)

    return MODEL_REGISTRY.register(name, checked)


def available_models() -> list[str]:
    """Names of the registered sequence models, sorted."""
    return MODEL_REGISTRY.names()


def model_entry(name: str) -> ModelEntry:
    """The registry entry of model ``name`` (factory, closed-form fit)."""
    return MODEL_REGISTRY.lookup(name)


def model_fit_kind(name: str) -> str:
    """How ``train_sequence_model`` fits model ``name``: 'keras' or 'closed_form'."""
    return model_entry(name).fit


def model_factory(name: str) -> Callable[..., keras.Model]:
    return model_entry(name).factory


def _keyword_parameters(factory: Callable) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(factory).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def model_param_names(name: str) -> tuple[str, ...]:
    """Hyper-parameter names that model ``name`` accepts.

    Args:
        name: a registered model name.

    Returns:
        The keyword parameter names of the model's factory, in declaration order.
    """
    return tuple(p.name for p in _keyword_parameters(model_factory(name)))


def model_defaults(name: str) -> dict:
    """Default hyper-parameters of model ``name`` (a fresh dict): the schema default of each run
    parameter it accepts, the factory's own default of each architecture knob."""
    return {
        p.name: copy.deepcopy(SCHEMA[p.name].default) if p.default is p.empty else p.default
        for p in _keyword_parameters(model_factory(name))
    }


def model_params_from_config(config) -> dict:
    """The hyper-parameters of model ``config['model']`` that ``config`` sets (e.g. the training config)."""
    return {k: config[k] for k in model_param_names(config["model"]) if k in config}
