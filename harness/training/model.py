"""build_model(spec, input_shape, num_classes) -> keras.Model, for every `model.arch`.

Keras APIs only (no tf.* calls), so models also build on the JAX backend. Training core:
imports neither mlflow nor optuna.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import keras
from keras import layers

from harness.entries.spec import ModelSpec
from harness.errors import HarnessError
from harness.paths import keras_home
from harness.training import augment, builders, geometry

MIN_INPUT = {"resnet50": 32, "vgg16": 32, "squeezenet": 32}  # keras.applications' minimum
IMAGENET_FILES = {
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications' "caffe" preprocessing


@keras.saving.register_keras_serializable(package="harness")
class CaffePreprocess(layers.Layer):
    """[0, 1] RGB -> the BGR, mean-centred 0-255 input that ImageNet ResNet50/VGG16 expect.
    A named layer rather than a Lambda, so saved models load in Keras's safe mode."""

    def call(self, inputs):
        bgr = keras.ops.flip(inputs * 255.0, axis=-1)
        return bgr - keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=bgr.dtype)


def build_model(
    spec: ModelSpec,
    input_shape: tuple[int, int, int],
    num_classes: int,
    seed: int = 0,
    input_dtype: str = "float32",
    root: Optional[Path] = None,
) -> keras.Model:
    """The Keras model an entry describes; the last layer computes in float32. uint8 images
    are scaled to [0, 1] by the model's first layer (so they travel to the device as bytes).
    A spec whose layers do not fit the images raises geometry.CannotBuild. A model.builder's
    model (found from the project `root`) gets the images after that scaling and the
    augmentation."""
    geometry.check(spec, input_shape)
    inputs = keras.Input(shape=input_shape, name="image", dtype=input_dtype)
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs) if input_dtype == "uint8" else inputs
    x = _augment(x, spec, seed)
    if spec.builder is not None:
        if spec.input_size:
            x = layers.Resizing(spec.input_size, spec.input_size, name="resize")(x)
            input_shape = (spec.input_size, spec.input_size, input_shape[-1])
        own = builders.build(spec, input_shape, num_classes, root or Path.cwd())
        outputs = layers.Activation("linear", dtype="float32", name="probabilities")(own(x))
        return keras.Model(inputs, outputs, name=own.name)
    if spec.arch == "cnn":
        if spec.input_size:
            x = layers.Resizing(spec.input_size, spec.input_size, name="resize")(x)
        x = _conv_blocks(x, spec)
    else:
        x = _backbone(x, spec, input_shape)
    x = _head(x, spec)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name=spec.arch)


def _augment(x, spec: ModelSpec, seed: int):
    if spec.augment is None:
        return x
    if spec.augment.translate:
        x = augment.Translate(spec.augment.translate, seed=seed, name="random_translation")(x)
    if spec.augment.flip:
        x = augment.Flip(spec.augment.flip, seed=seed, name="random_flip")(x)
    return x


def _conv_blocks(x, spec: ModelSpec):
    for b, block in enumerate(spec.blocks, start=1):
        for c in range(1, block.convs + 1):
            x = layers.Conv2D(block.filters, block.kernel_size, padding=spec.padding, name=f"block{b}_conv{c}")(x)
            if spec.batch_norm:
                x = layers.BatchNormalization(momentum=spec.bn_momentum, name=f"block{b}_bn{c}")(x)
            x = layers.Activation(spec.activation, name=f"block{b}_{spec.activation}{c}")(x)
        if block.pool:
            x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        if block.dropout:
            x = layers.Dropout(block.dropout, name=f"block{b}_dropout")(x)
    return layers.Flatten(name="flatten")(x)


def _head(x, spec: ModelSpec):
    for d, dense in enumerate(spec.dense, start=1):
        regularizer = keras.regularizers.L2(dense.l2) if dense.l2 else None
        x = layers.Dense(dense.units, kernel_regularizer=regularizer, name=f"dense{d}")(x)
        if dense.batch_norm if dense.batch_norm is not None else spec.batch_norm:
            x = layers.BatchNormalization(momentum=spec.bn_momentum, name=f"dense{d}_bn")(x)
        x = layers.Activation(spec.activation, name=f"dense{d}_{spec.activation}")(x)
        if dense.dropout:
            x = layers.Dropout(dense.dropout, name=f"dense{d}_dropout")(x)
    if spec.classifier_dropout:
        x = layers.Dropout(spec.classifier_dropout, name="classifier_dropout")(x)
    return x


def _backbone(x, spec: ModelSpec, input_shape):
    size = spec.input_size or max(MIN_INPUT[spec.arch], input_shape[0])
    if (input_shape[0], input_shape[1]) != (size, size):
        x = layers.Resizing(size, size, name="resize")(x)
    if input_shape[2] == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    if spec.arch == "squeezenet":
        features = squeezenet_features(x)
        return layers.GlobalAveragePooling2D(name="squeezenet_pool")(features)
    if spec.pretrained == "imagenet":
        x = CaffePreprocess(name="imagenet_preprocess")(x)
    application = {"resnet50": keras.applications.ResNet50, "vgg16": keras.applications.VGG16}[spec.arch]
    weights = _weights(spec)
    try:
        backbone = application(include_top=False, weights=weights, input_shape=(size, size, 3))
    except Exception as exc:  # noqa: BLE001 - a download that cannot happen offline
        raise HarnessError(
            f"model.pretrained: cannot load {spec.arch} weights {weights!r} ({type(exc).__name__}: "
            f"{str(exc)[:120]}); put {IMAGENET_FILES[spec.arch]} in {keras_home() / 'models'}, "
            f"give a weights file path, or set model.pretrained=null to train from scratch"
        ) from None
    _freeze(backbone, spec.trainable)
    frozen = spec.trainable == "none"
    x = backbone(x, training=False) if frozen else backbone(x)
    return layers.Flatten(name="flatten")(x)


def _weights(spec: ModelSpec):
    if spec.pretrained is None:
        return None
    if spec.pretrained == "imagenet":
        cached = keras_home() / "models" / IMAGENET_FILES[spec.arch]
        return str(cached) if cached.is_file() else "imagenet"
    path = Path(spec.pretrained).expanduser()
    if not path.is_file():
        raise HarnessError(f"model.pretrained: no weights file at {path}")
    return str(path)


def _freeze(backbone: keras.Model, trainable: str) -> None:
    if trainable == "all":
        return
    if trainable == "none":
        backbone.trainable = False
        return
    top = int(trainable.split(":")[1])
    for layer in backbone.layers[: max(len(backbone.layers) - top, 0)]:
        layer.trainable = False


def squeezenet_features(x):
    """SqueezeNet 1.1 (Iandola et al., 2016) up to the last fire module, built from scratch
    as the report did; 'same' pooling so 32x32 inputs keep a feature map."""

    def fire(x, name, squeeze, expand):
        s = layers.Conv2D(squeeze, 1, activation="relu", name=f"{name}_squeeze")(x)
        e1 = layers.Conv2D(expand, 1, activation="relu", name=f"{name}_expand1x1")(s)
        e3 = layers.Conv2D(expand, 3, padding="same", activation="relu", name=f"{name}_expand3x3")(s)
        return layers.Concatenate(name=f"{name}_concat")([e1, e3])

    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = fire(x, "fire2", 16, 64)
    x = fire(x, "fire3", 16, 64)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
    x = fire(x, "fire4", 32, 128)
    x = fire(x, "fire5", 32, 128)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool5")(x)
    x = fire(x, "fire6", 48, 192)
    x = fire(x, "fire7", 48, 192)
    x = fire(x, "fire8", 64, 256)
    x = fire(x, "fire9", 64, 256)
    return layers.Dropout(0.5, name="fire9_dropout")(x)
