"""Catalog loading: the contract example, and errors that name the item and field."""

import pytest
import yaml

from alerts.catalog import Category, CatalogError, load_catalog
from tests.unit.helpers import CONTRACT, LICENCE, broken

RAW = yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8"))


def test_the_contract_example_loads_with_default_requires():
    catalog = load_catalog(RAW)
    item = catalog.item(LICENCE)
    assert item.category is Category.LICENSING
    assert [n.id for n in item.nodes] == ["accept", "undertake", "site_check", "review", "approve", "close"]
    assert item.node("undertake").requires == ("accept",)
    assert item.node("site_check").required is False
    assert item.node("approve").requires == ("review",)  # nearest earlier required node
    assert item.decision_node == "approve"
    assert catalog.item("320200-CF-SCJG-0007").discretion["V-FOOD-124"][1].max == 60000
    assert catalog.departments["SCJG"].head.email == "scjg-head@example.gov.cn"


@pytest.mark.parametrize("path, value, words", [
    (("items", 0, "promised_days"), KeyError, "item '320200-XK-SCJG-0001': missing required field 'promised_days'"),
    (("items", 0, "promised_days"), "ten", "promised_days must be a whole number"),
    (("items", 0, "category"), "licence", "category 'licence' is not one of"),
    (("items", 0, "department"), "NOPE", "department 'NOPE' is not in departments"),
    (("items", 0, "nodes"), [], "nodes must be a non-empty list"),
    (("items", 0, "nodes", 1, "name"), KeyError, "node 'undertake': missing required field 'name'"),
    (("items", 0, "nodes", 3, "requires"), ["approve"], "requires 'approve', which is not an earlier node"),
    (("items", 1, "discretion", "V-FOOD-124", 0, "min"), 90000, "min 90000 is above max"),
    (("items", 1, "code"), "320200-XK-SCJG-0001", "duplicate item code"),
    (("departments", 0, "name"), KeyError, "department 'SCJG': missing required field 'name'"),
    (("timezone",), "Asia/Shangai", "timezone 'Asia/Shangai' is not an IANA timezone"),
    (("departments",), 5, "departments must be a list"),
])
def test_errors_name_the_item_and_the_field(path, value, words):
    with pytest.raises(CatalogError) as info:
        load_catalog(broken(RAW, path, value))
    assert words in str(info.value)
