"""`harness init DIR`: a project of the user's own, outside this repository: `ablations/`
with a three-step history (a baseline, a wider model, a regularised one) over a builder in
`mymodels.py` (a small ResNet with skip connections), which runs on the bundled digits."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import app, echo
from harness.errors import HarnessError

MODELS = '''"""Your models. Each function takes input_shape and num_classes (given by the harness) and
its own params (an entry's model.params), and returns an uncompiled keras.Model whose output
is one probability per class. An entry names one as model.builder: "mymodels:NAME"."""

import keras
from keras import layers


def _norm():
    return layers.BatchNormalization(momentum=0.9)  # Keras's 0.99 lags behind a short run's few hundred steps


def small_resnet(input_shape, num_classes, width: int = 16, depth: int = 1, dropout: float = 0.0):
    """A stem convolution, `depth` residual blocks of `width` filters (two convolutions with
    batch norm, added to the block's input), global average pooling and a softmax."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    for _ in range(depth):
        y = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        y = layers.Activation("relu")(_norm()(y))
        y = _norm()(layers.Conv2D(width, 3, padding="same", use_bias=False)(y))
        x = layers.Activation("relu")(layers.Add()([x, y]))  # the skip connection
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="small_resnet")
'''

ENTRIES = {
    "baseline": """description: A small ResNet (one residual block of 16 filters) trained with Adam.
model:
  builder: "mymodels:small_resnet"
  params: {width: 16, depth: 1}
optimizer: {name: adam, learning_rate: 0.003}
training:
  epochs: 15
  batch_size: 64
""",
    "wider": """extends: baseline
description: Twice the filters in the residual block.
model:
  params: {width: 32}
""",
    "regularised": """extends: wider
description: Dropout before the classifier and label smoothing.
model:
  params: {dropout: 0.3}
loss: {label_smoothing: 0.1}
""",
}


@app.command("init")
def init_project(
    folder: Path = typer.Argument(..., help="The project folder to create (it may exist, without ablations/)."),
) -> None:
    """A project of your own: ablations/ with a three-step history over your builder in
    mymodels.py. Then, inside it: harness study regularised --seeds 2; harness compare."""
    folder = folder.expanduser()
    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"{folder}: exists and is not a folder")
    if (folder / "ablations").exists() or (folder / "mymodels.py").exists():
        raise HarnessError(f"{folder}: already holds ablations/ or mymodels.py; init writes only into a new project")
    try:
        (folder / "ablations").mkdir(parents=True)
        for name, text in ENTRIES.items():
            (folder / "ablations" / f"{name}.yaml").write_text(text)
        (folder / "mymodels.py").write_text(MODELS)
    except OSError as exc:
        raise HarnessError(f"{folder}: cannot write the project ({exc.strerror or exc})") from None
    echo(f"created {folder}: mymodels.py (small_resnet) and ablations/ ({', '.join(ENTRIES)})")
    echo(f"next: cd {folder} && harness study regularised --seeds 2 && harness compare")
