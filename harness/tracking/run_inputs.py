"""The data a run used, as MLflow's own dataset inputs, so the runs table's Datasets column,
its dataset filter and a run page's "Datasets used" show them: one MLflow dataset per split
(training, validation; test for the final run), named after the data source, with our
dataset fingerprint in its digest, the image shape and class count in its schema and
profile. No image is copied into the store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag

CONTEXT = "mlflow.data.context"  # the input tag MLflow's UI reads as a dataset's role
SOURCES = {"digits": "sklearn.datasets.load_digits", "cifar10": "keras.datasets.cifar10"}


def dataset_record(
    source: str, fingerprint: str, split: str, shape: Sequence[int], classes: Sequence[str], rows: int
) -> MlflowDataset:
    """One split of a data source as an MLflow dataset entity."""
    if source.startswith("folder:"):
        location = {"uri": str(Path(source[len("folder:") :]).expanduser().resolve())}
        source_type = "local"
    else:
        location = {"uri": SOURCES.get(source, source)}
        source_type = "code"
    features = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, *map(int, shape)]}}]
    targets = [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]
    schema = {"mlflow_tensorspec": {"features": json.dumps(features), "targets": json.dumps(targets)}}
    profile = {
        "num_rows": int(rows),
        "image_shape": [int(s) for s in shape],
        "classes": len(classes),
        "class_names": list(classes)[:50],
        "split": split,
    }
    return MlflowDataset(
        name=source,
        digest=f"{fingerprint[:16]}-{split}"[:36],
        source_type=source_type,
        source=json.dumps(location),
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )


def log_dataset_inputs(client, run_id: str, dataset, splits: Sequence[str] = ("training", "validation")) -> None:
    """Log the splits of a harness Dataset (data.Dataset) as the run's MLflow inputs."""
    sizes = {"training": len(dataset.train), "validation": len(dataset.val)}
    inputs = [
        DatasetInput(
            dataset_record(
                dataset.source, dataset.fingerprint, split, dataset.input_shape, dataset.class_names, sizes[split]
            ),
            tags=[InputTag(CONTEXT, split)],
        )
        for split in splits
    ]
    client.log_inputs(run_id, datasets=inputs)


def log_test_input(client, run_id: str, source: str, split, class_names: Sequence[str]) -> None:
    """Log the test split (a data.Split) the final model was evaluated on."""
    from harness.data.splits import fingerprint_arrays

    record = dataset_record(source, fingerprint_arrays(split), "test", split.x.shape[1:], class_names, len(split))
    client.log_inputs(run_id, datasets=[DatasetInput(record, tags=[InputTag(CONTEXT, "test")])])
