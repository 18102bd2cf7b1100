"""Layered, typed, validated parameters."""

from pathlib import Path

import pytest
import yaml

from nexara_lib.config import SCHEMA, ParamError, Range, parse_override
from nexara_lib.run.param_docs import parameters_page
from nexara_lib.run.params import params_from_namespace, resolve_params

PARAMS = Path(__file__).resolve().parents[1] / "params"


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_layering_left_to_right_then_overrides(tmp_path):
    a = write(tmp_path, "a.yaml", {"synthetic_clips": 10, "dropout": 0.5, "epochs": 7})
    b = write(tmp_path, "b.yaml", {"dropout": 0.2})
    p = resolve_params([a, b], {"epochs": 3})
    assert (p.synthetic_clips, p.dropout, p.epochs) == (10, 0.2, 3)
    assert p.source("dropout") == str(b) and p.source("epochs") == "--set" and p.source("seed") == "default"
    assert p.seed == SCHEMA["seed"].default


@pytest.mark.parametrize(
    "data, message",
    [
        ({"synthetic_clips": 4, "dropuot": 0.3}, "did you mean dropout"),
        ({"synthetic_clips": 4, "epochs": "ten"}, "expected an integer"),
        ({"synthetic_clips": 4, "epochs": True}, "expected an integer"),
        ({"synthetic_clips": 4, "class_weights": "yes"}, "expected true/false"),
        ({"synthetic_clips": 4, "head_units": [64, "x"]}, "every item must be int"),
        ({"synthetic_clips": 4, "optimizer": "rmsprop"}, "not one of"),
        ({"data_dir": "does/not/exist"}, "does not exist"),
        ({"synthetic_clips": 4, "ensemble_members": [{"model": "hybrid", "sed": 1}]}, "unknown keys"),
        ({"synthetic_clips": 4, "split_fractions": [0.5, 0.5, 0.5]}, "summing to 1"),
        ({}, "no data"),
        ({"synthetic_clips": 4, "tta_transforms": ["identity", "hfilp"]}, "unknown ['hfilp']"),
        ({"synthetic_clips": 4, "tta_transforms": ["hflip"]}, "must include 'identity'"),
        ({"synthetic_clips": 4, "backbone": "alexnet"}, "unknown ['alexnet']"),
        ({"synthetic_clips": 4, "ensemble_members": [{"model": "lstm9"}]}, "unknown ['lstm9']"),
        ({"synthetic_clips": 4, "augment_ops": ["noise", "cutmix"]}, "unknown ['cutmix']"),
        # ranges declared in the schema: the message names the allowed range and the value
        ({"synthetic_clips": 4, "dropout": 1.0}, "must be in [0, 1), got 1.0"),
        ({"synthetic_clips": 4, "recurrent_dropout": -0.1}, "must be in [0, 1), got -0.1"),
        ({"synthetic_clips": 4, "epochs": 0}, "must be >= 1, got 0"),
        ({"synthetic_clips": 4, "batch_size": 0}, "must be >= 1, got 0"),
        ({"synthetic_clips": 4, "learning_rate": 0.0}, "must be > 0, got 0.0"),
        ({"synthetic_clips": 4, "augment_factor": 0}, "must be >= 1 (1 = no augmentation), got 0"),
        ({"synthetic_clips": 4, "frames_per_clip": 1}, "must be >= 2 (frames per clip), got 1"),
        ({"synthetic_clips": 4, "extract_workers": -1}, "must be >= 0 (0 = decode in this process), got -1"),
        ({"synthetic_clips": 4, "gap_stop_patience": -1}, "must be >= 0 (0 = never stop on the gap), got -1"),
        ({"synthetic_clips": 4, "max_false_positive_rate": 1.0}, "must be in (0, 1), got 1.0"),
        ({"synthetic_clips": 4, "focal_alpha": 1.5}, "must be in (0, 1), got 1.5"),
        ({"synthetic_clips": 4, "head_units": [64, 0]}, "every item must be >= 1, got 0"),
        ({"synthetic_clips": 4, "dropout": float("nan")}, "must be in [0, 1), got nan"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path, data, message):
    path = write(tmp_path, "exp.yaml", data)
    with pytest.raises(ParamError) as err:
        resolve_params([path])
    text = str(err.value)
    assert message in text
    key = next(k for k in data if k != "synthetic_clips") if len(data) > 1 or "data_dir" in data else "data_dir"
    assert repr(key) in text
    if data:
        assert str(path) in text


def test_a_range_is_checked_on_overrides_too():
    with pytest.raises(ParamError, match=r"parameter 'label_smoothing' \(from --set\): must be in \[0, 1\), got 1.0"):
        resolve_params([], {"synthetic_clips": 4, "label_smoothing": 1.0})
    assert resolve_params([], {"synthetic_clips": 4, "focal_alpha": "auto", "dropout": 0.0}).dropout == 0.0


@pytest.mark.parametrize("key", [k for k, p in SCHEMA.items() if p.bounds is not None])
def test_every_default_lies_in_its_own_range(key):
    spec = SCHEMA[key]
    values = spec.default if isinstance(spec.default, list) else [spec.default]
    assert all(isinstance(v, str) or v in spec.bounds for v in values), (
        f"{key} default {spec.default!r} vs {spec.bounds}"
    )


def test_range_text():
    assert (str(Range(0, 1, high_open=True)), str(Range(0, 1, low_open=True, high_open=True))) == (
        "in [0, 1)",
        "in (0, 1)",
    )
    assert (str(Range(2, note="frames")), str(Range(0, low_open=True)), str(Range(high=1))) == (
        ">= 2 (frames)",
        "> 0",
        "<= 1",
    )
    assert 0 in Range(0) and 0 not in Range(0, low_open=True) and float("nan") not in Range()


def test_relative_paths_resolve_against_the_yaml_file(tmp_path):
    (tmp_path / "sub" / "data").mkdir(parents=True)
    path = write(tmp_path / "sub", "exp.yaml", {"data_dir": "data"})
    p = resolve_params([path])
    assert p.data_dir == [str((tmp_path / "sub" / "data").resolve())]


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ParamError, match="does not exist"):
        resolve_params([tmp_path / "nope.yaml"])
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ParamError, match="mapping"):
        resolve_params([bad])


def test_override_parsing_reads_yaml_values():
    assert parse_override("epochs=5") == ("epochs", 5)
    assert parse_override("head_units=[4, 2]") == ("head_units", [4, 2])
    assert parse_override("run_name=my run") == ("run_name", "my run")
    with pytest.raises(ParamError, match="key=value"):
        parse_override("epochs")


def test_notebook_namespace_overrides_files(tmp_path):
    path = write(tmp_path, "a.yaml", {"synthetic_clips": 4})
    p = params_from_namespace([path], {"epochs": 2, "not_a_param": 1, "__name__": "x"})
    assert p.epochs == 2 and "not_a_param" not in p


@pytest.mark.parametrize("experiment", ["demo.yaml", "smoke.yaml", "surv_dev.yaml"])
def test_shipped_parameter_files_validate(experiment):
    if experiment == "surv_dev.yaml" and not (PARAMS.parents[1] / "shared" / "data" / "surv-fight-dev").is_dir():
        pytest.skip("../shared/data/surv-fight-dev is not present")
    p = resolve_params([PARAMS / "base.yaml", PARAMS / experiment])
    assert p.run_name


def test_rwf_placeholder_path_fails_fast_naming_the_file():
    with pytest.raises(ParamError, match="rwf2000_vgg19.yaml"):
        resolve_params([PARAMS / "base.yaml", PARAMS / "rwf2000_vgg19.yaml"])


def test_unquoted_on_and_off_in_yaml_mean_the_words(tmp_path):
    """YAML 1.1 reads `multi_gpu: off` as false; the documented spelling must work unquoted."""
    f = tmp_path / "gpu.yaml"
    f.write_text("multi_gpu: off\nmixed_precision: on\n")
    params = resolve_params([PARAMS / "base.yaml", PARAMS / "smoke.yaml", f])
    assert params["multi_gpu"] == "off" and params["mixed_precision"] == "on"
    f.write_text("multi_gpu: on\n")  # not a choice of multi_gpu: the usual message
    with pytest.raises(ParamError, match="multi_gpu"):
        resolve_params([PARAMS / "base.yaml", PARAMS / "smoke.yaml", f])


def test_parameter_page_lists_every_key_once_with_its_default():
    page = parameters_page()
    for key in SCHEMA:
        assert page.count(f"| `{key}` |") == 1, key
    assert "| `frames_per_clip` | `20` |" in page  # the schema's default, as YAML


def test_base_yaml_does_not_repeat_schema_defaults():
    """The schema is the one owner of every default: base.yaml sets only what differs from it
    (experiment files may restate a key to say what they run)."""
    values = yaml.safe_load((PARAMS / "base.yaml").read_text()) or {}
    repeated = [k for k, v in values.items() if k in SCHEMA and v == SCHEMA[k].default]
    assert not repeated and set(values) == {"output_root"}, f"base.yaml repeats schema defaults: {repeated}"


def test_stage_config_is_a_frozen_typed_view_of_one_stage():
    import dataclasses

    from nexara_lib.config import stage_config, stage_keys

    params = resolve_params([], {"synthetic_clips": 8, "dropout": 0.4, "seed": 7})
    training = stage_config(params, "training")
    assert {f.name for f in dataclasses.fields(training)} == set(stage_keys("training")) | {"seed"}
    assert training.dropout == 0.4 and training.seed == 7 and training.head_units == tuple(params["head_units"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        training.dropout = 0.1
    assert stage_config({}, "features").frames_per_clip == SCHEMA["frames_per_clip"].default  # schema defaults
    with pytest.raises(ParamError, match="dropout"):
        stage_config({"dropout": 2.0}, "training")
    with pytest.raises(ValueError, match="no parameter belongs"):
        stage_keys("nonsense")
