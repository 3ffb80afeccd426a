"""Whether a model can be built on images of a given size, in pure Python: the feature map
of every block, checked before TensorFlow is imported or anything is written to the store.
A lab model with 'valid' padding shrinks an 8x8 digit to nothing by its third block; the
check says so in one line instead of a Keras traceback from inside a run."""

from __future__ import annotations

from typing import Optional

from harness.entries.spec import ModelSpec
from harness.errors import HarnessError

BACKBONE_MIN = 32  # keras.applications' smallest input side for resnet50 and vgg16


class CannotBuild(HarnessError):
    """A spec whose layers do not fit the images; the message starts with 'cannot build:'."""


def check(model: ModelSpec, input_shape: tuple[int, ...]) -> None:
    """Raise CannotBuild when a convolution or pooling of `model` gets an empty input."""
    if model.arch != "cnn" or model.builder is not None:
        return  # backbones resize to BACKBONE_MIN at least; a builder is checked by building it
    height, width = (model.input_size, model.input_size) if model.input_size else tuple(input_shape[:2])
    start = f"{height}x{width}"
    for b, block in enumerate(model.blocks, start=1):
        for c in range(1, block.convs + 1):
            if model.padding == "valid":
                height, width = height - block.kernel_size + 1, width - block.kernel_size + 1
                if height < 1 or width < 1:
                    raise CannotBuild(
                        f"cannot build: valid padding shrinks {start} to 0 at block {b} "
                        f"(convolution {c}, kernel {block.kernel_size}x{block.kernel_size}); "
                        f"use model.padding=same, fewer blocks or a larger model.input_size"
                    )
        if block.pool:
            if height < 2 or width < 2:
                raise CannotBuild(
                    f"cannot build: block {b} pools a {height}x{width} feature map (from {start}); "
                    f"use model.padding=same, fewer blocks or a larger model.input_size"
                )
            height, width = height // 2, width // 2


def multiply_adds(model: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> Optional[int]:
    """The multiply-adds of one image's forward pass through a cnn's convolutions and dense
    layers (what its training time grows with, unlike its parameter count: a convolution
    costs in proportion to the feature map it slides over); None for a backbone or a builder."""
    if model.arch != "cnn" or model.builder is not None:
        return None
    height, width = (model.input_size, model.input_size) if model.input_size else tuple(input_shape[:2])
    channels = input_shape[2] if len(input_shape) > 2 else 1
    total = 0
    for block in model.blocks:
        for _ in range(block.convs):
            if model.padding == "valid":
                height, width = height - block.kernel_size + 1, width - block.kernel_size + 1
            total += max(height, 0) * max(width, 0) * block.kernel_size**2 * channels * block.filters
            channels = block.filters
        if block.pool:
            height, width = height // 2, width // 2
    features = max(height, 0) * max(width, 0) * channels
    for dense in model.dense:
        total += features * dense.units
        features = dense.units
    return total + features * num_classes
