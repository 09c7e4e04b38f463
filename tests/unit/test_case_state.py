"""A case's state as the steps change it."""

from __future__ import annotations

import dataclasses
import inspect

from alerts.state import CaseState


def test_evolve_names_every_field_of_a_state_and_changes_only_those_given():
    """`CaseState.evolve` sets each field by name (not dataclasses.replace, for its cost): a field
    added to the state and not to it would be lost from every state evolved."""
    fields = {f.name for f in dataclasses.fields(CaseState) if f.init}
    assert fields == {"case_id", *inspect.signature(CaseState.evolve).parameters} - {"self"}
    base = CaseState(case_id="E1", revision=3, arrived=("x",), refused={"y": "schema"})
    assert base.ended_by is None  # asked: kept while the events stay
    for name in fields - {"case_id"}:
        value = object()
        changed = base.evolve(**{name: value})
        assert getattr(changed, name) is value
        assert all(getattr(changed, other) == getattr(base, other) for other in fields - {name})
        assert changed._end is (False if name == "events" else None)
