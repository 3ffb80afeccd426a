"""The leave-one-out variants of a chain, as specs (nothing trained): each step put back to
its parent's values, whether it switched a section on, off, or changed a leaf."""

from __future__ import annotations

from harness.entries.registry import Registry
from harness.study.leave_one_out import leave_one_out
from tests.helpers import GEO_CHAIN, write_entry

WEIGHTED = GEO_CHAIN["geo_same"] + "training: {class_weight: {boost: {'3': 2.0}}}\n"
UNWEIGHTED = GEO_CHAIN["geo_deep"] + "training: {class_weight: null}\n"


def test_a_step_that_switches_a_section_off_is_reverted_to_the_parents_section(project):
    for name, text in {**GEO_CHAIN, "geo_same": WEIGHTED, "geo_deep": UNWEIGHTED}.items():
        write_entry(project, name, text)
    registry = Registry(project)
    variants = {v.step: v for v in leave_one_out(registry, "geo_deep", [])}
    own = registry.resolve("geo_deep", variants["geo_deep"].overrides).spec
    assert own.training.class_weight is not None and own.training.class_weight.boost == {"3": 2.0}
    assert len(own.model.blocks) == 1  # the step's other change, reverted too
    assert set(variants["geo_same"].overwritten_by) == {"training.class_weight.boost.3", "training.class_weight.mode"}
    assert registry.resolve("geo_deep", variants["geo_same"].overrides).spec.model.padding == "valid"


def test_a_step_that_switches_a_section_on_is_reverted_to_null(project):
    for name, text in {**GEO_CHAIN, "geo_same": GEO_CHAIN["geo_same"] + "training: {early_stopping: {}}\n"}.items():
        write_entry(project, name, text)
    registry = Registry(project)
    variants = {v.step: v for v in leave_one_out(registry, "geo_deep", [])}
    without = registry.resolve("geo_deep", variants["geo_same"].overrides).spec
    assert without.training.early_stopping is None and without.model.padding == "valid"
    assert registry.resolve("geo_deep", []).spec.training.early_stopping is not None
