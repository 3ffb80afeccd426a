"""The strict schema of a resolved ablation spec.

Every default carries its reason. Unknown keys are rejected (``extra="forbid"``), so a typo
in an entry is an error, not a silently ignored setting. Values are strict: no `yes` or
`'3'` for a number, no number for a flag, no infinite or NaN floats. This module imports
no TensorFlow.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """Base of every spec section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


SEED_MAX = 2**32 - 1  # NumPy's and TensorFlow's seeds are unsigned 32-bit
ACTIVATIONS = (  # keras.activations that take no arguments
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "mish",
    "tanh",
    "sigmoid",
    "hard_sigmoid",
    "hard_silu",
    "softplus",
    "softsign",
    "exponential",
    "linear",
)
TRANSLATE_MAX = 0.5  # beyond half the image, a shifted image is more reflection than image
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")  # keras.layers.RandomFlip's
MONITORS = ("val_accuracy", "val_loss", "accuracy", "loss")  # what fit logs each epoch


class DataSpec(Strict):
    source: str = "digits"  # scikit-learn's bundled digits: needs no network (quick start)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # 10% of the training pool, stratified
    subset: Optional[int] = Field(None, ge=20)  # images of the training pool to use; None = all
    seed: int = Field(0, ge=0, le=SEED_MAX)  # the split's seed, independent of the training seed

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value in ("digits", "cifar10") or (value.startswith("folder:") and len(value) > 7):
            return value
        raise ValueError(f"unknown dataset {value!r}; use digits, cifar10 or folder:DIR")


class AugmentSpec(Strict):
    """On-device layers (harness/training/augment.py), the distributions of Keras's own."""

    translate: Optional[float] = Field(None, ge=0.0, lt=TRANSLATE_MAX)  # fraction of height and width
    flip: Optional[Literal[FLIP_MODES]] = None  # type: ignore[valid-type]


class BlockSpec(Strict):
    filters: int = Field(ge=1, le=4096)
    convs: int = Field(2, ge=1, le=16)  # the report's blocks hold two convolutions each
    kernel_size: int = Field(3, ge=1, le=31)  # the report uses 3x3 throughout
    pool: bool = True  # MaxPooling2D(2, 2) closes every block in the report
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)  # after the pooling


class DenseSpec(Strict):
    units: int = Field(ge=1, le=65536)
    l2: Optional[float] = Field(None, ge=0.0, le=10.0)  # kernel regularizer factor
    batch_norm: Optional[bool] = None  # None: follow model.batch_norm
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)  # after the activation


class ModelSpec(Strict):
    arch: Literal["cnn", "resnet50", "vgg16", "squeezenet"] = "cnn"
    input_size: Optional[int] = Field(None, ge=8, le=1024)  # resize inputs to this side; None: as needed
    augment: Optional[AugmentSpec] = None  # training-only layers after the Input
    blocks: list[BlockSpec] = Field(
        default_factory=lambda: [BlockSpec(filters=32, convs=2)],  # the lab model
        max_length=32,  # far beyond any image's halvings; keeps a hostile list from taking minutes
    )
    padding: Literal["valid", "same"] = "valid"  # Keras's default, as the lab model
    batch_norm: bool = False  # before the activation when on (report section 1)
    # "auto": Keras's 0.99 (as the report) when an epoch has >= 50 steps, else 0.9, since
    # 0.99 averages lag for ~500 steps and hold short runs at chance (DESIGN.md, pitfalls).
    bn_momentum: Union[Literal["auto"], Annotated[float, Field(gt=0.0, lt=1.0)]] = "auto"
    activation: Literal[ACTIVATIONS] = "relu"  # type: ignore[valid-type]
    dense: list[DenseSpec] = Field(default_factory=list, max_length=32)  # hidden layers after Flatten
    classifier_dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)  # before the output layer
    pretrained: Optional[str] = None  # None: from scratch; "imagenet"; or a weights file path
    trainable: str = "all"  # all | none | top:N (layers of the backbone left trainable)
    # A model of the user's own: "module:function", the module beside the project's ablations/
    # (the project root is importable) or installed; the function takes input_shape,
    # num_classes and `params` and returns an uncompiled keras.Model ending in a softmax.
    # None: the built-in arch above. Its keys (blocks, dense, ...) do not apply to a builder.
    builder: Optional[str] = None
    params: dict[str, Any] = Field(default_factory=dict)  # the builder's keyword arguments

    @field_validator("builder")
    @classmethod
    def _builder(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not BUILDER_PATTERN.fullmatch(value):
            raise ValueError(f"expected 'module:function' (e.g. 'mymodels:small_resnet'), got {value!r}")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a Python keyword argument name")
            _plain(item, key)
        return value

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, value: str) -> str:
        if value in ("all", "none"):
            return value
        if re.fullmatch(r"top:[0-9]{1,6}", value):  # ASCII digits: str.isdigit also takes '²
            return value
        raise ValueError(f"expected all, none or top:N, got {value!r}")


BUILDER_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
PARAMS_DEPTH = 8  # nesting of a builder's params: a config, not a data structure


def _plain(value: Any, where: str, depth: int = 0) -> None:
    """A builder's param is YAML data: text, a finite number, a flag, null, or lists and
    mappings of them; anything else (NaN, inf, a deep nest) is a ValueError naming it."""
    if depth > PARAMS_DEPTH:
        raise ValueError(f"{where}: nested deeper than {PARAMS_DEPTH}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _plain(item, f"{where}.{index}", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not text")
            _plain(item, f"{where}.{key}", depth + 1)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"{where}: expected YAML data, got {type(value).__name__}")


class OptimizerSpec(Strict):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd"  # the lab model's optimizer
    learning_rate: float = Field(0.01, gt=0.0, le=10.0)  # Keras's SGD default; above 10 every optimizer diverges
    momentum: float = Field(0.0, ge=0.0, lt=1.0)  # SGD and RMSprop only
    weight_decay: Optional[float] = Field(None, ge=0.0, le=1.0)  # AdamW and friends; a fraction per step


class LossSpec(Strict):
    name: Literal["crossentropy", "focal"] = "crossentropy"
    gamma: float = Field(2.0, ge=0.0, le=20.0)  # focal only; the report's value (beyond ~10 the loss is 0)
    alpha: float = Field(0.25, gt=0.0, le=1.0)  # focal only; the report's value
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


class EarlyStoppingSpec(Strict):
    monitor: Literal[MONITORS] = "val_accuracy"  # type: ignore[valid-type]
    patience: int = Field(5, ge=0, le=10_000)  # the report's value
    mode: Literal["min", "max", "auto"] = "max"
    min_delta: float = Field(0.0, ge=0.0)
    restore_best_weights: bool = True


class LRScheduleSpec(Strict):
    name: Literal["reduce_on_plateau"] = "reduce_on_plateau"
    monitor: Literal[MONITORS] = "val_loss"  # type: ignore[valid-type]  # Keras's default
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int = Field(3, ge=0, le=10_000)
    min_lr: float = Field(1e-6, ge=0.0, le=10.0)
    min_delta: float = Field(1e-4, ge=0.0)  # Keras's default: smaller changes are no improvement


class ClassWeightSpec(Strict):
    mode: Literal["balanced"] = "balanced"  # scikit-learn's compute_class_weight
    # class (index or name) -> factor on its balanced weight; the report doubles cat and dog
    boost: dict[Union[int, str], Annotated[float, Field(gt=0.0, le=1000.0)]] = Field(default_factory=dict)


class TrainingSpec(Strict):
    epochs: int = Field(20, ge=1, le=100_000)
    batch_size: int = Field(512, ge=1, le=1_000_000)  # the report's starting batch size
    seed: int = Field(0, ge=0, le=SEED_MAX)
    early_stopping: Optional[EarlyStoppingSpec] = None
    lr_schedule: Optional[LRScheduleSpec] = None
    class_weight: Optional[ClassWeightSpec] = None
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"  # per device
    jit_compile: Union[bool, Literal["auto"]] = "auto"  # per device
    # tf_data: TensorFlow's tf.data (bench/throughput.py measured it faster than arrays); on
    # Keras's JAX backend the data in device memory where it fits, else host batches; numpy:
    # host batches always. The run's tag and param resolved.pipeline say which fed it.
    pipeline: Literal["tf_data", "numpy"] = "tf_data"
    # Deterministic kernels: a resumed run then logs exactly what an uninterrupted one would.
    # Off by default: TensorFlow's deterministic ops can be slower, and runs differ by seed anyway.
    deterministic: bool = False
    # MLflow's system metrics (CPU, memory, GPU where present), sampled every few seconds.
    # Off by default (bench/overhead.py --system-metrics measures its cost); it does not change
    # what is trained, so it is left out of the spec's fingerprint and of a run's settings.
    system_metrics: bool = False


class Spec(Strict):
    """A resolved entry: everything that determines a run (the meta keys live elsewhere)."""

    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        arch, pretrained = self.model.arch, self.model.pretrained
        if pretrained is not None and arch == "cnn":
            raise ValueError("model.pretrained: the cnn arch is always built from scratch")
        if pretrained == "imagenet" and arch == "squeezenet":
            raise ValueError("model.pretrained: Keras ships no imagenet weights for squeezenet")
        if self.model.params and self.model.builder is None:
            raise ValueError("model.params: only a model.builder takes params")
        if self.model.builder is not None and (arch != "cnn" or pretrained is not None):
            raise ValueError("model.builder: replaces model.arch and model.pretrained; leave them unset")
        return self


SECTIONS = tuple(Spec.model_fields)
META_KEYS = ("extends", "description", "report", "search")


class ReportClaims(Strict):
    """What the report states for a step, shown beside our measurements."""

    train_accuracy: Optional[float] = Field(None, ge=0.0, le=1.0)  # a fraction, as the report writes them
    val_accuracy: Optional[float] = Field(None, ge=0.0, le=1.0)
    test_accuracy: Optional[float] = Field(None, ge=0.0, le=1.0)
    train_loss: Optional[float] = Field(None, ge=0.0)
    val_loss: Optional[float] = Field(None, ge=0.0)
    test_loss: Optional[float] = Field(None, ge=0.0)
    note: Optional[str] = Field(None, max_length=2000)
