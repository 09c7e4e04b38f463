"""Scopes: resolved against the catalog, turned into bound SQL conditions."""

from __future__ import annotations

import pytest

from alerts.catalog import load_catalog
from sinks.scope import Scope, ScopedQuery, UnknownScope

CATALOG = load_catalog({
    "departments": [
        {"code": "SCJG", "name": "市场监管局", "region": "320200"},
        {"code": "ZJJ", "name": "住建局", "region": "320200"},
        {"code": "XSJG", "name": "区市场监管局", "region": "320205"},
        {"code": "NOREG", "name": "无区划部门"},
    ],
    "items": [{"code": "I1", "name": "许可", "category": "licensing", "department": "SCJG", "promised_days": 5,
               "nodes": [{"id": "a", "name": "受理"}]}],
})


def test_a_region_covers_its_departments():
    scope = Scope.of(regions=["320205"]).resolve(CATALOG)
    assert scope.departments == {"XSJG"}
    assert scope.regions == {"320205"}
    assert Scope.of(departments=["ZJJ"], regions=["320205"]).resolve(CATALOG).departments == {"ZJJ", "XSJG"}


@pytest.mark.parametrize("scope, message", [
    (Scope.of(departments=["NOPE"]), "unknown department(s) NOPE"),
    (Scope.of(regions=["000000"]), "unknown region(s) 000000"),
    (Scope.of(departments=["SCJG", "ZZZ"]), "unknown department(s) ZZZ"),
])
def test_unknown_codes_are_refused(scope, message):
    with pytest.raises(UnknownScope, match=message.replace("(", r"\(").replace(")", r"\)")):
        scope.resolve(CATALOG)


def test_an_empty_scope_is_refused_rather_than_read_as_everything():
    with pytest.raises(UnknownScope):
        Scope.of()


def test_codes_are_bound_parameters_never_sql_text():
    hostile = "SCJG') OR 1=1 --"
    query = ScopedQuery("alert_id", "alerts FINAL", where="status != 'withdrawn'", tail="ORDER BY alert_id")
    sql, parameters = query.sql(Scope(departments=frozenset({hostile})))
    assert hostile not in sql
    assert parameters["scope_departments"] == [hostile]
    assert sql.startswith("SELECT alert_id FROM alerts FINAL WHERE (status != 'withdrawn') AND ")
    assert "department IN {scope_departments:Array(String)}" in sql
    assert sql.endswith("ORDER BY alert_id")


def test_everything_adds_no_condition_and_a_missing_scope_is_an_error():
    assert ScopedQuery("1", "alerts").sql(Scope.everything()) == ("SELECT 1 FROM alerts WHERE 1", {})
    with pytest.raises(TypeError):
        ScopedQuery("1", "alerts").sql(None)
