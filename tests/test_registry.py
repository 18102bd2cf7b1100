"""The shared registry type, the project registries built on it, and the one transform registry
(every entry applied once to a tiny input of its kind, for each use it serves)."""

import json

import numpy as np
import pytest

from nexara_lib.features import backbones
from nexara_lib.registry import Registry
from nexara_lib.training import models
from nexara_lib.transforms import registry as transforms
from nexara_lib.transforms.registry import TRANSFORMS, available_transforms, check_transform_names, get_transform

RNG = np.random.default_rng(0)
FRAMES = RNG.integers(0, 256, size=(6, 8, 10, 3), dtype=np.uint8)
SPAN = 50
INDICES = np.rint(np.linspace(0, SPAN - 1, 8)).astype(np.int64)
FEATURES = RNG.normal(size=(6, 5, 4)).astype(np.float32)
LABELS = np.array([0, 1, 0, 1, 1, 0])
FEATURE_STD = FEATURES.reshape(-1, 4).std(0)
INPUT_OF = {"pixels": FRAMES, "sampling": INDICES, "features": FEATURES}


def test_register_lookup_and_errors():
    reg = Registry("widget")

    @reg.register("a")
    def make_a():
        return 1

    reg.register("b", lambda fn: ("wrapped", fn))(make_a)
    assert reg.lookup("a") is make_a and reg.lookup("b")[0] == "wrapped" and reg.names() == ["a", "b"]
    with pytest.raises(ValueError, match=r"unknown widget 'c'; available: \['a', 'b'\]"):
        reg.lookup("c")
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)


def test_project_registries_are_populated():
    assert {"hybrid", "bilstm", "bigru", "conv1d_lstm", "transformer", "pooled_linear", "pooled_mlp"} <= set(
        models.available_models()
    )
    assert {"vgg19", "resnet50v2", "mobilenetv2", "mobilenet_v1_tflite", "flow"} <= set(backbones.available_backbones())


# --------------------------------------------------------------------------
# The transform registry
# --------------------------------------------------------------------------
def test_transforms_by_level_and_use():
    assert available_transforms("feature", "augment") == ["feature_dropout", "mix", "noise", "speed", "temporal_shift"]
    assert available_transforms("frame", "augment") == [
        "brightness_contrast",
        "hflip",
        "rotate_zoom",
        "temporal_jitter",
    ]
    assert available_transforms(use="tta") == [
        "brightness_contrast",
        "feature_noise",
        "feature_shift",
        "frame_rate",
        "frame_shift",
        "hflip",
        "identity",
    ]
    assert available_transforms(use="stream") == [  # tests/test_views.py, tests/test_motion_images.py
        "motion_crop",
        "motion_image",
        "motion_image_crop",
        "tiles",
    ]
    assert available_transforms() == TRANSFORMS.names()
    # one name, one transform: the frame views that are also augmentations are registered once
    assert get_transform("hflip").uses == get_transform("brightness_contrast").uses == ("augment", "tta")
    with pytest.raises(ValueError, match="level must be one of"):
        available_transforms("pixel")
    with pytest.raises(ValueError, match="use must be one of"):
        available_transforms(use="train")


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_every_entry_is_well_formed(name):
    entry = get_transform(name)
    assert entry.name == name and entry.description
    assert entry.acts_on in transforms.ACTS_ON and entry.level in transforms.LEVELS
    assert entry.uses and set(entry.needs) <= set(transforms.INPUTS)
    if entry.draw is not None:
        params = entry.draw(np.random.default_rng(3))
        assert json.loads(json.dumps(params)) == params  # plain values: recorded next to the features
        assert params == entry.draw(np.random.default_rng(3))
    if entry.tta_params is not None:
        assert json.loads(json.dumps(entry.view_params())) == entry.view_params()
    if entry.stream is not None:
        params = entry.stream.check({})
        assert json.loads(json.dumps(params)) == params and entry.stream.key(params).startswith(name)


def _params_for(entry, use):
    return entry.draw(np.random.default_rng(11)) if use == "augment" else entry.view_params()


# stream views change the frame shape by design (regions at the backbone's size): tests/test_views.py
@pytest.mark.parametrize(
    "name, use", [(n, u) for n in TRANSFORMS.names() for u in get_transform(n).uses if u != "stream"]
)
def test_every_entry_applies_once_keeping_shape_and_dtype(name, use):
    entry = get_transform(name)
    x = INPUT_OF[entry.acts_on]
    before = x.copy()

    def run():
        return entry.apply(
            x, _params_for(entry, use), rng=np.random.default_rng(5), labels=LABELS, span=SPAN, feature_std=FEATURE_STD
        )

    out = run()
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.isfinite(out.astype(np.float64)).all()
    assert np.array_equal(x, before) and not np.shares_memory(out, x)  # a new array, the input untouched
    assert np.array_equal(out, run())  # same seeds, same output
    if entry.acts_on == "sampling":
        assert out.min() >= 0 and out.max() <= SPAN - 1 and (np.diff(out) >= 0).all()


def test_needed_inputs_are_required_and_unknown_inputs_refused():
    with pytest.raises(ValueError, match=r"'mix' needs \['labels'\]"):
        get_transform("mix").apply(FEATURES, {"alpha": 0.4}, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"'temporal_jitter' needs \['span'\]"):
        get_transform("temporal_jitter").apply(INDICES, {"seed": 1})
    with pytest.raises(ValueError, match="unknown inputs"):
        get_transform("hflip").apply(FRAMES, {"flip": True}, seed=3)
    with pytest.raises(ValueError, match="acts on features"):
        get_transform("noise").apply(FRAMES, {"scale": 0.1}, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="not a test-time view"):
        get_transform("rotate_zoom").view_params()


def test_view_params_take_the_run_seed_only_where_seeded():
    assert get_transform("feature_noise").view_params(seed=9) == {"scale": 0.05, "seed": 9}
    assert get_transform("feature_shift").view_params(seed=9) == {"shift": 1}
    assert get_transform("feature_noise").view_params() == {"scale": 0.05, "seed": 0}


def test_check_transform_names_explains_what_is_wrong():
    assert check_transform_names(["noise", "noise"], level="feature", use="augment") == ["noise", "noise"]
    with pytest.raises(ValueError, match=r"unknown \['cutmix'\]; available ops: \['feature_dropout'"):
        check_transform_names(["noise", "cutmix"], level="feature", use="augment", what="ops")
    with pytest.raises(ValueError, match=r"must be feature-level augmentation transforms, but 'hflip' acts on pixels"):
        check_transform_names(["hflip"], level="feature", use="augment")
    with pytest.raises(ValueError, match=r"must be test-time view transforms, but 'rotate_zoom' .* serves augment"):
        check_transform_names(["identity", "rotate_zoom"], use="tta")
    for bad in ([], "noise", None):
        with pytest.raises(ValueError, match="non-empty list"):
            check_transform_names(bad)


def test_registration_is_checked():
    with pytest.raises(ValueError, match="acts_on"):
        transforms.register_transform("blur", "frames", "?", tta_params={})
    with pytest.raises(ValueError, match="needs"):
        transforms.register_transform("blur", "pixels", "?", needs=("seed",), tta_params={})
    with pytest.raises(ValueError, match="draw .*tta_params"):
        transforms.register_transform("blur", "pixels", "?")
    with pytest.raises(ValueError, match="already registered"):
        transforms.register_transform("hflip", "pixels", "?", tta_params={})(lambda x, params: x)
    assert "blur" not in TRANSFORMS
