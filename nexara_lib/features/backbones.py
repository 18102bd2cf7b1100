"""Frame-encoder registry: name -> facts (input size, feature dim, preprocessing) + a factory.

``create_backbone(name, weights, image_size)`` is the one entry point. An
encoder is a callable mapping a batch of uint8 RGB frames ``(N, H, W, 3)`` (or
frame pairs ``(N, 2, H, W, 3)`` when ``needs_next_frame``) to float32
features ``(N, D)``.

``weights``: ``"imagenet"`` (downloads on a connected machine through Keras),
``"none"`` (random initialisation: for tests and offline plumbing checks) or a
path to a local weights file (``.h5``/``.weights.h5`` for Keras backbones, the
``.tflite`` model for ``mobilenet_v1_tflite``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nexara_lib.registry import Registry
from nexara_lib.runtime import configure_precision

# Where a backbone with weights 'imagenet' finds its pretrained file when it cannot download one
# (the LiteRT encoder): the ``pretrained_dir`` parameter, exported to every process by ``use_pretrained_dir``.
PRETRAINED_DIR_ENV = "NEXARA_PRETRAINED_DIR"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: int  # default square input side in pixels
    feature_dim: int  # length of one frame's feature vector
    preprocessing: str  # what happens to uint8 RGB before the network (documentation)
    batch_size: int  # frames per call that fits comfortably on CPU
    needs_next_frame: bool  # True: encoder consumes (frame, next frame) pairs
    fixed_input_size: bool  # True: image_size cannot differ from input_size
    framework: str = "keras"  # what runs it: keras (mixed precision on GPU possible), litert, opencv
    input_dtype: str = "uint8"  # what it takes: uint8 RGB frames; it returns float32 features
    pretrained_file: str = ""  # file name of its 'imagenet' weights inside pretrained_dir ('' = downloaded by Keras)
    factory: Callable = dataclasses.field(repr=False, compare=False, kw_only=True)  # (weights, size) -> encoder


_REGISTRY = Registry("backbone")


def register_backbone(
    name,
    *,
    input_size,
    feature_dim,
    preprocessing,
    batch_size=32,
    needs_next_frame=False,
    fixed_input_size=False,
    framework="keras",
    pretrained_file="",
):
    """Decorator: register ``factory(weights, image_size) -> encoder`` under ``name``."""
    return _REGISTRY.register(
        name,
        lambda factory: BackboneSpec(
            name,
            input_size,
            feature_dim,
            preprocessing,
            batch_size,
            needs_next_frame,
            fixed_input_size,
            framework,
            "uint8",
            pretrained_file,
            factory=factory,
        ),
    )


def use_pretrained_dir(folder: str | Path | None) -> None:
    """Make ``folder`` the place every process of this run (decoders, Ray workers) finds pretrained files."""
    if folder:
        os.environ[PRETRAINED_DIR_ENV] = str(folder)


def pretrained_path(name: str) -> Path | None:
    """The offline 'imagenet' file of backbone ``name`` in the pretrained folder; None when no folder is set."""
    spec = get_backbone_spec(name)
    folder = os.environ.get(PRETRAINED_DIR_ENV)
    if not spec.pretrained_file or not folder:
        return None
    return Path(folder) / spec.pretrained_file


def available_backbones() -> list[str]:
    return _REGISTRY.names()


def get_backbone_spec(name: str) -> BackboneSpec:
    return _REGISTRY.lookup(name)


def resolve_image_size(name: str, image_size: int = 0) -> int:
    """The frame side used for ``name``: its default when ``image_size`` is 0."""
    spec = get_backbone_spec(name)
    if not image_size:
        return spec.input_size
    if spec.fixed_input_size and image_size != spec.input_size:
        raise ValueError(
            f"backbone {name!r} takes {spec.input_size}x{spec.input_size} frames only; "
            f"set image_size to 0 or {spec.input_size} (got {image_size})"
        )
    if image_size < 32:
        raise ValueError(f"image_size {image_size} is too small for backbone {name!r}; use >= 32 or 0 for the default")
    return image_size


def create_backbone(name: str, weights: str = "imagenet", image_size: int = 0, mixed_precision: str = "auto"):
    """Build the encoder registered as ``name``.

    Args:
        name: registry name (see ``available_backbones()``).
        weights: 'imagenet', 'none', or a local weights file path.
        image_size: square input side; 0 = the backbone's default.
        mixed_precision: for Keras backbones, 'auto' (float16 compute when a GPU is visible),
            'on' or 'off'; features are returned as float32 either way.
    Returns:
        A callable ``encode(frames) -> np.ndarray (N, D) float32`` with attribute ``precision``.
    """
    spec = get_backbone_spec(name)
    size = resolve_image_size(name, image_size)
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise ValueError(
            f"backbone_weights {weights!r} is neither 'imagenet', 'none' nor an existing file; "
            "give a path to a local weights file"
        )
    if spec.framework != "keras":
        encode = spec.factory(weights, size)
        encode.precision = "float32" if spec.framework == "opencv" else "uint8 (quantized)"
        return encode
    import keras

    previous = keras.config.dtype_policy().name
    try:  # the policy applies while the backbone's layers are built, then the global one is restored
        policy = configure_precision(mixed_precision)
        encode = spec.factory(weights, size)
    finally:
        keras.config.set_dtype_policy(previous)
    encode.precision = policy
    return encode


_WEIGHTS_DIGESTS: dict[tuple, str] = {}  # (real path, size, mtime_ns) -> digest: each file version hashed once


def weights_identity(weights: str) -> str:
    """A short, stable name for ``weights`` used in cache keys: 'imagenet', 'none', or a file's name, size and a
    hash of its bytes (a folder's: of every file's relative path and bytes).

    Never where the file lies or when it was written: the same weights copied to another folder or machine name
    the same cache, and a changed file names a new one. Hashed once per process and file version.
    """
    if weights in ("imagenet", "none"):
        return weights
    path = Path(weights)
    stat = path.stat()
    version = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if version not in _WEIGHTS_DIGESTS:
        digest = hashlib.sha1()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.relative_to(path).as_posix().encode() if file != path else b"")
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        _WEIGHTS_DIGESTS[version] = digest.hexdigest()[:10]
    return f"{path.stem}-{stat.st_size}-{_WEIGHTS_DIGESTS[version]}"


def _check_frames(frames: np.ndarray, pairs: bool) -> np.ndarray:
    ndim = 5 if pairs else 4
    if frames.dtype != np.uint8 or frames.ndim != ndim or frames.shape[-1] != 3:
        want = "(N, 2, H, W, 3)" if pairs else "(N, H, W, 3)"
        raise ValueError(f"expected uint8 RGB frames of shape {want}, got {frames.dtype} {frames.shape}")
    return frames


def _keras_encoder(build_model, preprocess, size):
    """Wrap a Keras image model: uint8 frames -> preprocess -> float32 features."""
    import keras

    model = build_model()

    def encode(frames):
        frames = _check_frames(frames, pairs=False)
        if frames.shape[1:3] != (size, size):
            raise ValueError(f"frames must be {size}x{size}, got {frames.shape[1:3]}")
        x = preprocess(frames.astype("float32"))
        out = model(x, training=False)
        return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32).reshape(len(frames), -1)

    encode.model = model
    return encode


def _keras_weights(weights):
    """Translate our weights value into the Keras ``weights=`` argument + an optional file to load."""
    if weights == "imagenet":
        return "imagenet", None
    return None, (None if weights == "none" else weights)


# Seed of the random initialisation behind weights 'none': every process (decoder, Ray worker,
# a rerun) builds the same network, so features from different workers belong together.
NONE_WEIGHTS_SEED = 1234


def _build_keras_app(app_cls, size, weights, **kwargs):
    import keras

    keras_weights, weights_file = _keras_weights(weights)
    if weights == "none":
        keras.utils.set_random_seed(NONE_WEIGHTS_SEED)
    model = app_cls(weights=keras_weights, input_shape=(size, size, 3), **kwargs)
    if weights_file:
        model.load_weights(weights_file)
    return model


@register_backbone(
    "vgg19",
    input_size=224,
    feature_dim=4096,
    batch_size=16,
    fixed_input_size=True,
    preprocessing="caffe: RGB->BGR, ImageNet mean subtracted; features from fc2",
)
def _vgg19(weights, size):
    import keras

    def build():
        full = _build_keras_app(keras.applications.VGG19, size, weights, include_top=True)
        return keras.Model(full.input, full.get_layer("fc2").output, name="vgg19_fc2")

    return _keras_encoder(build, keras.applications.vgg19.preprocess_input, size)


def _register_pooled_app(name, app_name, preprocess_module, *, input_size, feature_dim, batch_size, preprocessing):
    """Register a Keras application used without its top, global-average pooled."""

    @register_backbone(
        name, input_size=input_size, feature_dim=feature_dim, batch_size=batch_size, preprocessing=preprocessing
    )
    def factory(weights, size):
        import keras

        app = getattr(keras.applications, app_name)
        # EfficientNets rescale inside the model: their preprocess_input is the identity
        preprocess = getattr(keras.applications, preprocess_module).preprocess_input
        return _keras_encoder(
            lambda: _build_keras_app(app, size, weights, include_top=False, pooling="avg"), preprocess, size
        )

    return factory


_TF_SCALING = "tf: scaled to [-1, 1]; global average pooling"
_BUILT_IN = "none outside the model (rescaling is built in); global average pooling"
_register_pooled_app(
    "resnet50v2", "ResNet50V2", "resnet_v2", input_size=224, feature_dim=2048, batch_size=32, preprocessing=_TF_SCALING
)
_register_pooled_app(
    "mobilenetv2",
    "MobileNetV2",
    "mobilenet_v2",
    input_size=224,
    feature_dim=1280,
    batch_size=64,
    preprocessing=_TF_SCALING,
)
_register_pooled_app(
    "efficientnetb0",
    "EfficientNetB0",
    "efficientnet",
    input_size=224,
    feature_dim=1280,
    batch_size=32,
    preprocessing=_BUILT_IN,
)
_register_pooled_app(
    "efficientnetb4",
    "EfficientNetB4",
    "efficientnet",
    input_size=380,
    feature_dim=1792,
    batch_size=8,
    preprocessing=_BUILT_IN,
)


@register_backbone(
    "mobilenet_v1_tflite",
    input_size=224,
    feature_dim=1024,
    batch_size=32,
    fixed_input_size=True,
    framework="litert",
    pretrained_file="mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
    preprocessing="uint8 RGB as is (quantized model); output dequantized with the tensor's scale/zero point",
)
def _mobilenet_v1_tflite(weights, size):
    if weights == "imagenet":
        model_path = pretrained_path("mobilenet_v1_tflite")
        if model_path is None or not model_path.is_file():
            where = f"{model_path} does not exist" if model_path else "no pretrained_dir is set"
            raise ValueError(
                f"backbone 'mobilenet_v1_tflite' with weights 'imagenet' loads "
                f"{get_backbone_spec('mobilenet_v1_tflite').pretrained_file} from pretrained_dir, but "
                f"{where}; set pretrained_dir to the folder that holds it (../shared/models on these "
                "machines), or backbone_weights to the .tflite file's path"
            )
    elif weights == "none":
        raise ValueError(
            "backbone 'mobilenet_v1_tflite' is a fixed pretrained model: set backbone_weights to "
            "'imagenet' (the shared .tflite) or a .tflite path; 'none' is not possible"
        )
    else:
        model_path = Path(weights)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older stacks ship the same interpreter inside TensorFlow
        from tensorflow.lite import Interpreter
    interpreter = Interpreter(model_path=str(model_path), num_threads=2)
    input_detail = interpreter.get_input_details()[0]
    state = {"batch": None}

    def encode(frames):
        frames = _check_frames(frames, pairs=False)
        if frames.shape[1:3] != (size, size):
            raise ValueError(f"frames must be {size}x{size}, got {frames.shape[1:3]}")
        if state["batch"] != len(frames):  # resizing the batch dimension re-plans the graph: only when it changes
            interpreter.resize_tensor_input(input_detail["index"], [len(frames), size, size, 3])
            interpreter.allocate_tensors()
            state["batch"] = len(frames)
        interpreter.set_tensor(input_detail["index"], np.ascontiguousarray(frames))
        interpreter.invoke()
        out_detail = interpreter.get_output_details()[0]
        raw = interpreter.get_tensor(out_detail["index"]).reshape(len(frames), -1)
        scale, zero = out_detail["quantization"]
        return ((raw.astype(np.float32) - zero) * (scale or 1.0)).astype(np.float32)

    return encode


def _flow_dim() -> int:
    from nexara_lib.features.flow import FLOW_FEATURE_DIM

    return FLOW_FEATURE_DIM


@register_backbone(
    "flow",
    input_size=112,
    feature_dim=-1,
    batch_size=64,
    needs_next_frame=True,
    framework="opencv",
    preprocessing="grayscale; Farneback optical flow between each sampled frame and the next; statistics",
)
def _flow(weights, size):
    from nexara_lib.features.flow import flow_features

    if weights not in ("imagenet", "none"):
        raise ValueError("backbone 'flow' has no weights: set backbone_weights to 'none'")

    def encode(pairs):
        return flow_features(_check_frames(pairs, pairs=True))

    return encode


def describe_backbone(name: str) -> dict:
    """The registry facts of ``name`` as a plain dict (feature dim resolved), for tables and reports."""
    spec = get_backbone_spec(name)
    return {
        "name": spec.name,
        "input_size": spec.input_size,
        "feature_dim": feature_dim(name),
        "preprocessing": spec.preprocessing,
        "batch_size": spec.batch_size,
        "input": "frame pairs (frame, next frame)" if spec.needs_next_frame else "frames",
        "fixed_input_size": spec.fixed_input_size,
        "framework": spec.framework,
        "dtype": f"{spec.input_dtype} RGB in, float32 features out",
    }


def feature_dim(name: str) -> int:
    """Feature length of one frame for backbone ``name``."""
    return _flow_dim() if name == "flow" else get_backbone_spec(name).feature_dim
