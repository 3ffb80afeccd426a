"""Whether a CNN fits the images, in pure Python: each block's feature map followed through
valid convolutions and poolings, with a one-line reason when it shrinks to nothing."""

from __future__ import annotations

import pytest

from harness.entries.spec import BlockSpec, DenseSpec, ModelSpec
from harness.training import geometry
from harness.training.geometry import CannotBuild, check


def model(padding: str, *blocks: int, **extra) -> ModelSpec:
    return ModelSpec(padding=padding, blocks=[{"filters": 4, "convs": convs} for convs in blocks], **extra)


def test_same_padding_only_halves():
    check(model("same", 2, 2, 2), (8, 8, 1))  # 8 -> 4 -> 2 -> 1
    with pytest.raises(CannotBuild, match="block 4 pools a 1x1 feature map"):
        check(model("same", 2, 2, 2, 2), (8, 8, 1))


def test_valid_padding_shrinks_each_convolution():
    check(model("valid", 2), (8, 8, 1))  # 8 -> 6 -> 4 -> pool 2
    with pytest.raises(CannotBuild, match="valid padding shrinks 8x8 to 0 at block 2"):
        check(model("valid", 2, 2), (8, 8, 1))
    check(model("valid", 2, 2), (32, 32, 3))


def test_input_size_and_backbones():
    check(model("valid", 2, 2, input_size=32), (8, 8, 1))  # resized first
    check(ModelSpec(arch="resnet50"), (8, 8, 1))  # backbones resize to their minimum
    with pytest.raises(CannotBuild, match=r"^cannot build: block 5 pools a 1x1"):
        check(model("same", *([1] * 5)), (16, 16, 3))  # 16 -> 8 -> 4 -> 2 -> 1


def test_multiply_adds_count_each_convolution_over_its_feature_map():
    lab = ModelSpec(blocks=[BlockSpec(filters=32, convs=2)])  # valid padding, as the lab model
    conv1, conv2 = 6 * 6 * 9 * 1 * 32, 4 * 4 * 9 * 32 * 32  # 8x8 -> 6x6 -> 4x4, pooled to 2x2x32
    assert geometry.multiply_adds(lab, (8, 8, 1), 10) == conv1 + conv2 + 2 * 2 * 32 * 10
    same = ModelSpec(blocks=[BlockSpec(filters=8, convs=1)], padding="same", dense=[DenseSpec(units=16)])
    small, large = geometry.multiply_adds(same, (8, 8, 3), 10), geometry.multiply_adds(same, (16, 16, 3), 10)
    assert small == 8 * 8 * 9 * 3 * 8 + 4 * 4 * 8 * 16 + 16 * 10
    assert large > 3 * small  # four times the pixels: the cost grows with the map, the parameters do not
    assert geometry.multiply_adds(ModelSpec(arch="resnet50"), (32, 32, 3), 10) is None
