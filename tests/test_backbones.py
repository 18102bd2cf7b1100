"""Every registered backbone builds (weights none, or the shared .tflite) and encodes real frames."""

import numpy as np
import pytest

from nexara_lib.features.backbones import (
    available_backbones,
    create_backbone,
    describe_backbone,
    feature_dim,
    get_backbone_spec,
    pretrained_path,
    resolve_image_size,
)

# Smallest sizes each backbone accepts, to keep the suite fast on CPU.
TEST_SIZES = {"resnet50v2": 64, "mobilenetv2": 64, "efficientnetb0": 64, "efficientnetb4": 64, "flow": 48}


@pytest.mark.parametrize("name", available_backbones())
def test_each_backbone_encodes_frames(name):
    spec = get_backbone_spec(name)
    weights = "none"
    if name == "mobilenet_v1_tflite":
        if not pretrained_path(name).is_file():
            pytest.skip("shared .tflite model not present")
        weights = "imagenet"
    size = TEST_SIZES.get(name, spec.input_size)
    encode = create_backbone(name, weights, size)
    rng = np.random.default_rng(0)
    shape = (3, 2, size, size, 3) if spec.needs_next_frame else (3, size, size, 3)
    frames = rng.integers(0, 256, shape, dtype=np.uint8)
    feats = encode(frames)
    assert feats.shape == (3, feature_dim(name))
    assert feats.dtype == np.float32 and np.isfinite(feats).all()
    assert feats.std() > 0  # a real encoder, not a constant


def test_tflite_backbone_is_batch_invariant():
    if not pretrained_path("mobilenet_v1_tflite").is_file():
        pytest.skip("shared .tflite model not present")
    encode = create_backbone("mobilenet_v1_tflite", "imagenet")
    frames = np.random.default_rng(1).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    together = encode(frames)
    one_by_one = np.concatenate([encode(frames[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("alexnet")
    with pytest.raises(ValueError, match="224x224 frames only"):
        resolve_image_size("vgg19", 112)
    with pytest.raises(ValueError, match="neither 'imagenet'"):
        create_backbone("resnet50v2", str(tmp_path / "missing.h5"), 64)
    encode = create_backbone("flow", "none")
    with pytest.raises(ValueError, match="uint8"):
        encode(np.zeros((2, 48, 48, 3), dtype=np.float32))


def test_describe_backbone_resolves_feature_dim():
    facts = describe_backbone("flow")
    assert facts["feature_dim"] == feature_dim("flow") > 0 and facts["input"].startswith("frame pairs")
    assert describe_backbone("vgg19")["feature_dim"] == 4096


def test_mixed_precision_applies_to_the_backbone_only_and_features_stay_float32():
    import keras

    before = keras.config.dtype_policy().name
    encode = create_backbone("mobilenetv2", "none", 32, mixed_precision="on")
    assert encode.precision == "mixed_float16"
    assert encode.model.layers[-1].compute_dtype == "float16"
    assert keras.config.dtype_policy().name == before  # the global policy is restored
    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    out = encode(frames)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert create_backbone("mobilenetv2", "none", 32, mixed_precision="auto").precision == "float32"  # CPU


def test_registry_states_framework_and_dtypes():
    facts = describe_backbone("mobilenet_v1_tflite")
    assert facts["framework"] == "litert" and "uint8" in facts["dtype"] and facts["batch_size"] > 0
    assert describe_backbone("flow")["framework"] == "opencv"
    assert describe_backbone("vgg19")["framework"] == "keras"


def test_random_weights_are_the_same_network_in_every_build():
    frames = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    a = create_backbone("resnet50v2", "none", 64)(frames)
    b = create_backbone("resnet50v2", "none", 64)(frames)
    assert np.array_equal(a, b) and np.abs(a).max() > 0


def test_offline_imagenet_file_without_pretrained_dir_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NEXARA_PRETRAINED_DIR", raising=False)
    assert pretrained_path("mobilenet_v1_tflite") is None
    with pytest.raises(ValueError, match="set pretrained_dir to the folder"):
        create_backbone("mobilenet_v1_tflite", "imagenet")
    monkeypatch.setenv("NEXARA_PRETRAINED_DIR", "/nonexistent")
    with pytest.raises(ValueError, match="does not exist"):
        create_backbone("mobilenet_v1_tflite", "imagenet")
