"""The shared registry type and the four registries built on it."""
import pytest

from nexara_lib.training import augment
from nexara_lib.features import backbones
from nexara_lib.training import models
from nexara_lib.evaluation import tta
from nexara_lib.registry import Registry


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
    assert {"hybrid", "bilstm", "bigru", "conv1d_lstm", "transformer"} <= set(models.available_models())
    assert {"noise", "feature_dropout", "temporal_shift", "speed", "mix"} <= set(augment.available_augmentations())
    assert {"identity", "hflip", "brightness_contrast", "temporal_shift", "feature_noise"} <= set(tta.TTA_TRANSFORMS)
    assert {"vgg19", "resnet50v2", "mobilenetv2", "mobilenet_v1_tflite", "flow"} <= set(backbones.available_backbones())
