"""The strict schema of a resolved ablation spec.

Every default carries its reason. Unknown keys are rejected (``extra="forbid"``), so a typo
in an entry is an error, not a silently ignored setting. This module imports no TensorFlow.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """Base of every spec section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSpec(Strict):
    source: str = "digits"  # scikit-learn's bundled digits: needs no network (quick start)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # 10% of the training pool, stratified
    subset: Optional[int] = Field(None, ge=20)  # images of the training pool to use; None = all
    seed: int = 0  # the split's seed, independent of the training seed

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value in ("digits", "cifar10") or (value.startswith("folder:") and len(value) > 7):
            return value
        raise ValueError(f"unknown dataset {value!r}; use digits, cifar10 or folder:DIR")


class AugmentSpec(Strict):
    translate: Optional[float] = Field(None, ge=0.0, lt=1.0)  # fraction of height and width
    flip: Optional[Literal["horizontal", "vertical", "horizontal_and_vertical"]] = None


class BlockSpec(Strict):
    filters: int = Field(ge=1)
    convs: int = Field(2, ge=1)  # the report's blocks hold two convolutions each
    kernel_size: int = Field(3, ge=1)  # the report uses 3x3 throughout
    pool: bool = True  # MaxPooling2D(2, 2) closes every block in the report
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)  # after the pooling


class DenseSpec(Strict):
    units: int = Field(ge=1)
    l2: Optional[float] = Field(None, ge=0.0)  # kernel regularizer factor
    batch_norm: Optional[bool] = None  # None: follow model.batch_norm
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)  # after the activation


class ModelSpec(Strict):
    arch: Literal["cnn", "resnet50", "vgg16", "squeezenet"] = "cnn"
    input_size: Optional[int] = Field(None, ge=8)  # resize inputs to this side; None: as needed
    augment: Optional[AugmentSpec] = None  # Keras preprocessing layers after the Input
    blocks: list[BlockSpec] = Field(
        default_factory=lambda: [BlockSpec(filters=32, convs=2)]  # the lab model
    )
    padding: Literal["valid", "same"] = "valid"  # Keras's default, as the lab model
    batch_norm: bool = False  # before the activation when on (report section 1)
    # "auto": Keras's 0.99 (as the report) when an epoch has >= 50 steps, else 0.9, since
    # 0.99 averages lag for ~500 steps and hold short runs at chance (DESIGN.md, pitfalls).
    bn_momentum: Union[Literal["auto"], Annotated[float, Field(gt=0.0, lt=1.0)]] = "auto"
    activation: str = "relu"
    dense: list[DenseSpec] = Field(default_factory=list)  # hidden layers after Flatten
    classifier_dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)  # before the output layer
    pretrained: Optional[str] = None  # None: from scratch; "imagenet"; or a weights file path
    trainable: str = "all"  # all | none | top:N (layers of the backbone left trainable)

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, value: str) -> str:
        if value in ("all", "none"):
            return value
        if value.startswith("top:") and value[4:].isdigit():
            return value
        raise ValueError(f"expected all, none or top:N, got {value!r}")


class OptimizerSpec(Strict):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd"  # the lab model's optimizer
    learning_rate: float = Field(0.01, gt=0.0)  # Keras's SGD default
    momentum: float = Field(0.0, ge=0.0, lt=1.0)  # SGD and RMSprop only
    weight_decay: Optional[float] = Field(None, ge=0.0)  # AdamW and friends


class LossSpec(Strict):
    name: Literal["crossentropy", "focal"] = "crossentropy"
    gamma: float = Field(2.0, ge=0.0)  # focal only; the report's value
    alpha: float = Field(0.25, gt=0.0, le=1.0)  # focal only; the report's value
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


class EarlyStoppingSpec(Strict):
    monitor: str = "val_accuracy"
    patience: int = Field(5, ge=0)  # the report's value
    mode: Literal["min", "max", "auto"] = "max"
    min_delta: float = Field(0.0, ge=0.0)
    restore_best_weights: bool = True


class LRScheduleSpec(Strict):
    name: Literal["reduce_on_plateau"] = "reduce_on_plateau"
    monitor: str = "val_loss"  # Keras's default for ReduceLROnPlateau
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int = Field(3, ge=0)
    min_lr: float = Field(1e-6, ge=0.0)


class ClassWeightSpec(Strict):
    mode: Literal["balanced"] = "balanced"  # scikit-learn's compute_class_weight
    boost: dict[Union[int, str], float] = Field(default_factory=dict)  # class -> multiplier


class TrainingSpec(Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(512, ge=1)  # the report's starting batch size
    seed: int = 0
    early_stopping: Optional[EarlyStoppingSpec] = None
    lr_schedule: Optional[LRScheduleSpec] = None
    class_weight: Optional[ClassWeightSpec] = None
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"  # per device
    jit_compile: Union[bool, Literal["auto"]] = "auto"  # per device
    pipeline: Literal["tf_data", "numpy"] = "tf_data"  # bench/throughput.py measured it faster


class Spec(Strict):
    """A resolved entry: everything that determines a run (the meta keys live elsewhere)."""

    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @model_validator(mode="after")
    def _consistent(self) -> "Spec":
        arch, pretrained = self.model.arch, self.model.pretrained
        if pretrained is not None and arch == "cnn":
            raise ValueError("model.pretrained: the cnn arch is always built from scratch")
        if pretrained == "imagenet" and arch == "squeezenet":
            raise ValueError("model.pretrained: Keras ships no imagenet weights for squeezenet")
        return self


SECTIONS = tuple(Spec.model_fields)
META_KEYS = ("extends", "description", "report", "search")


class ReportClaims(Strict):
    """What the report states for a step, shown beside our measurements."""

    train_accuracy: Optional[float] = None
    val_accuracy: Optional[float] = None
    test_accuracy: Optional[float] = None
    train_loss: Optional[float] = None
    val_loss: Optional[float] = None
    test_loss: Optional[float] = None
    note: Optional[str] = None
