"""Property-based: random YAML documents and spec values fed to the loader end in success or
the harness's one-line error, never a traceback; entry names cannot leave ablations/."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.entries.registry import Registry
from harness.entries.spec import SECTIONS
from harness.errors import HarnessError
from harness.tuning.search_space import parse_search

KEYS = [
    "extends",
    "description",
    "report",
    "search",
    *SECTIONS,
    "blocks",
    "epochs",
    "name",
    "learning_rate",
    "filters",
    "source",
    "subset",
    "model.blocks",
    "1e-4",
    "",
    "null",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=string.printable, max_size=12),
    st.sampled_from(["baseline", "adam", "final", "cnn", "same", "1e-4", "~"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers(0, 3)), children, max_size=5),
    ),
    max_leaves=25,
)
raw_texts = st.text(alphabet=string.printable + "\u00e9\u2603", max_size=200)


def load(project, text):
    (project / "ablations" / "fuzz.yaml").write_text(text)
    registry = Registry(project)
    try:
        resolved = registry.resolve("fuzz")
        parse_search(resolved, registry)
    except HarnessError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        return "error"
    return "ok"


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(document=documents)
def test_random_yaml_documents_load_or_fail_in_one_line(project, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    load(project, text)


@FAST
@given(text=raw_texts)
def test_random_text_loads_or_fails_in_one_line(project, text):
    load(project, text)


@FAST
@given(
    section=st.sampled_from(SECTIONS),
    key=st.sampled_from(
        [
            "epochs",
            "blocks",
            "name",
            "source",
            "learning_rate",
            "batch_norm",
            "augment",
            "early_stopping",
            "subset",
            "gamma",
        ]
    ),
    value=documents,
)
def test_random_values_for_spec_keys_load_or_fail_in_one_line(project, section, key, value):
    text = yaml.safe_dump({"extends": "baseline", section: {key: value}}, allow_unicode=True)
    load(project, text)


@FAST
@given(
    key=st.sampled_from(
        ["optimizer.learning_rate", "training.batch_size", "model.blocks.0.filters", "loss.gamma", "x"]
    ),
    spec=documents,
)
def test_random_search_blocks_load_or_fail_in_one_line(project, key, spec):
    text = yaml.safe_dump({"extends": "baseline", "search": {key: spec}}, allow_unicode=True)
    load(project, text)


@pytest.mark.parametrize("name", ["../secret", "..", "/etc/passwd", "a/b", "UPPER", "", "x.yaml", "baseline\x00"])
def test_entry_names_cannot_reach_outside_ablations(project, name):
    (project / "secret.yaml").write_text("description: outside\n")
    registry = Registry(project)
    with pytest.raises(HarnessError, match="bad entry name"):
        registry.resolve(name)
    (project / "ablations" / "sneaky.yaml").write_text(f"extends: {name!r}\n" if name else "extends: ''\n")
    with pytest.raises(HarnessError):
        registry.resolve("sneaky")


def test_yaml_is_loaded_safely(project):
    (project / "ablations" / "evil.yaml").write_text("description: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(HarnessError, match="malformed YAML"):
        Registry(project).resolve("evil")
