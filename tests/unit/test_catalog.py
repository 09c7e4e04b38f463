"""Catalog loading: the contract example, and errors that name the item and field."""

from pathlib import Path

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
    # The last copy won: another region, another head told of escalations (found by a black-box test).
    (("departments", 1, "code"), "SCJG", "department 'SCJG': duplicate department code"),
    (("departments", 0, "name"), KeyError, "department 'SCJG': missing required field 'name'"),
    (("timezone",), "Asia/Shangai", "timezone 'Asia/Shangai' is not an IANA timezone"),
    (("departments",), 5, "departments must be a list"),
    # Found by a black-box test: without the list every item's department went unchecked, and every
    # event naming a department was refused, a city's whole feed to the dead letters.
    (("departments",), KeyError, "missing required field 'departments'"),
    (("departments",), [], "missing required field 'departments'"),
])
def test_errors_name_the_item_and_the_field(path, value, words):
    with pytest.raises(CatalogError) as info:
        load_catalog(broken(RAW, path, value))
    assert words in str(info.value)


@pytest.mark.parametrize("where, email", [
    (("departments", 0, "head", "email"), "d1@example.gov.cn, evil@example.com"),  # every notice to both
    (("departments", 0, "head", "email"), "d1@example.gov.cn；evil@example.com"),
    (("departments", 0, "contact", "email"), "a@b@example.gov.cn"),  # tried ten times as a server down
    (("departments", 0, "contact", "email"), "d4@example.gov.cn\r\nBcc: evil@example.com"),
    (("departments", 0, "head", "email"), "交通局长 <d5@example.gov.cn>"),
    (("departments", 0, "head", "email"), "d2 head@example.gov.cn"),
    (("inspection_office", "email"), "jijian-at-example.gov.cn"),
    (("inspection_office", "email"), 5),
])
def test_a_catalog_address_is_one_mail_address(where, email):
    """Found by a black-box test: a head's address could be a list, and every notice went to each;
    one no mail server takes was tried as if the server were down. Each is refused at load."""
    with pytest.raises(CatalogError, match=r"is not one mail address: write one address, as name@domain"):
        load_catalog(broken(RAW, where, email))
    for fine in ("d1@example.gov.cn", "张三@例子.中国", "jijian+ticket@gov"):
        load_catalog(broken(RAW, where, fine))


def test_a_misspelt_departments_key_is_named():
    raw = {("departmnets" if key == "departments" else key): value for key, value in RAW.items()}
    with pytest.raises(CatalogError, match="did you mean 'departments' for 'departmnets'"):
        load_catalog(raw)


def test_the_judging_basis_is_the_same_in_every_process_and_changes_with_what_judges():
    """The digest recorded with each case row (`cases.judged_under`): a new process on the store
    must compute the same one for the same catalog, whatever the hash seed (a set in an item's
    published fields included), or it would load every case at each start; and another one once a
    time limit, the calendar, a threshold or the rules change."""
    import subprocess
    import sys
    from dataclasses import replace
    from datetime import date

    from alerts.calendar import WorkCalendar
    from alerts.config import RuleConfig
    from alerts.evaluate import Judge, judging_basis

    item = RAW["items"][0]
    raw = {**RAW, "items": [{**item, "public": {**item.get("public", {}), "tags": set("abcdefgh")}},
                            *RAW["items"][1:]]}
    script = ("import sys, yaml\n"
              "from alerts.calendar import WorkCalendar\nfrom alerts.catalog import load_catalog\n"
              "from alerts.evaluate import Judge, judging_basis\n"
              "raw = yaml.unsafe_load(sys.stdin.read())\n"
              "catalog = load_catalog(raw)\n"
              "print(judging_basis(Judge(catalog, WorkCalendar({}, catalog.timezone)), 'rules'))\n")
    digests = {subprocess.run([sys.executable, "-c", script], input=yaml.dump(raw, allow_unicode=True),
                              env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(CONTRACT.parents[2])},
                              capture_output=True, text=True, check=True).stdout.strip() for seed in ("1", "2", "3")}
    catalog = load_catalog(raw)
    judge = Judge(catalog, WorkCalendar({}, catalog.timezone))
    assert digests == {judging_basis(judge, "rules")}
    tighter = load_catalog({**raw, "items": [{**item, "promised_days": item["promised_days"] - 1}, *raw["items"][1:]]})
    others = [judging_basis(Judge(tighter, WorkCalendar({}, tighter.timezone)), "rules"),
              judging_basis(Judge(catalog, WorkCalendar({date(2026, 10, 10): True}, catalog.timezone)), "rules"),
              judging_basis(Judge(catalog, WorkCalendar({}, catalog.timezone), replace(RuleConfig(), outlier_window=400)),
                            "rules"),
              judging_basis(judge, "other rules")]
    self_built = load_catalog({**raw, "departments": [{**d, "self_built": not d.get("self_built", False)}
                                                       for d in raw["departments"]]})
    others.append(judging_basis(Judge(self_built, WorkCalendar({}, self_built.timezone)), "rules"))
    assert len({judging_basis(judge, "rules"), *others}) == 6
    # A contact's address, a department's name or the inspection office judge no case otherwise:
    # the next start judges no stored case again for them (before, the digest took the whole catalog).
    addressed = load_catalog({**raw, "departments": [{**d, "name": d["name"] + "（新）", "head": {
        "name": "新局长", "email": "new-head@example.gov.cn"}} for d in raw["departments"]],
        "inspection_office": {"name": "纪检监察室", "email": "jjjc@example.gov.cn"}})
    addressed_judge = Judge(addressed, WorkCalendar({}, addressed.timezone))
    assert judging_basis(addressed_judge, "rules") == judging_basis(judge, "rules")


def test_the_rules_digest_follows_the_domain_code():
    """The rules' part of the basis is read from the `alerts` package's files: the same twice,
    and another one if any of them changes (here, one more file)."""
    import alerts
    from streams.catalog_source import rules_digest

    first = rules_digest()
    assert rules_digest() == first
    extra = Path(alerts.__file__).parent / "_digest_probe.txt"
    try:
        extra.write_text("a release that changes a rule", encoding="utf-8")
        assert rules_digest() != first
    finally:
        extra.unlink()


def test_a_key_written_twice_in_a_yaml_file_is_refused_naming_both_lines(tmp_path):
    # Found by a black-box test: an inputs file with a department written twice lost the first's
    # complaint without a word (PyYAML keeps the last); a catalog or rulebook the same.
    from alerts.catalog import CatalogError
    from streams.catalog_source import read_yaml, yaml_of

    path = tmp_path / "catalog.yaml"
    path.write_text("departments:\n  - code: A\n    name: 甲\n    code: B\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"catalog .*catalog.yaml is not valid YAML: 'code' is written twice "
                                           r"in one mapping \(lines 2 and 4\)"):
        read_yaml(path, "catalog")
    # The same key in two mappings, and keys merged in and then overridden, are YAML as meant.
    assert yaml_of(b"a: {k: 1}\nb: {k: 2}\n", "f", "x") == {"a": {"k": 1}, "b": {"k": 2}}
    assert yaml_of(b"a: &base {k: 1, j: 1}\nb:\n  <<: *base\n  k: 2\n", "f", "x")["b"] == {"k": 2, "j": 1}


def test_keys_the_catalog_format_does_not_have_are_named(tmp_path, caplog):
    """Found by a black-box test: `discretoin:` for `discretion:`, a node's `dyas: 5`, `require:`
    were taken without a word (the benchmark, the time limit, the order gone). They are named in
    a warning when the catalog is loaded or reloaded; the catalog still loads (other systems may
    add keys of their own)."""
    import logging

    from alerts.catalog import unknown_keys
    from streams.catalog_source import CatalogSource

    raw = yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8"))
    assert unknown_keys(raw) == []
    item = raw["items"][1]
    item["discretoin"] = item.pop("discretion")
    raw["items"][0]["nodes"][1]["dyas"] = raw["items"][0]["nodes"][1].pop("days")
    raw["items"][0]["nodes"][3]["require"] = raw["items"][0]["nodes"][3].pop("requires")
    raw["thresholds"] = {"outlier_window": 100}
    found = unknown_keys(raw)
    assert found == ["catalog: thresholds", f"item {raw['items'][0]['code']!r}, node 'undertake': dyas",
                     f"item {raw['items'][0]['code']!r}, node 'review': require", f"item {item['code']!r}: discretoin"]
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="streams.catalog_source"):
        CatalogSource(catalog)
    assert "has keys the catalog format does not, which are not read (misspelt?): catalog: thresholds;" in caplog.text


def test_only_an_edit_that_changes_what_cases_are_judged_against_judges_them_again():
    """Review: any reload judged every held case again and so republished every card, a contact's
    new address included."""
    import copy

    from alerts.calendar import WorkCalendar
    from alerts.evaluate import Judge, judges_otherwise

    raw = yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8"))

    def judge_of(document) -> Judge:
        return Judge(load_catalog(document), WorkCalendar(on_missing_year=lambda year: None))

    base = judge_of(raw)
    contact = copy.deepcopy(raw)
    contact["departments"][0]["contact"] = {"name": "新联系人", "email": "new@example.gov.cn"}
    contact["departments"][0]["name"] = "改名后的部门"
    assert not judges_otherwise(base, judge_of(contact))
    for change in (lambda d: d["items"][0].update(promised_days=30),
                   lambda d: d["items"][0]["nodes"][1].update(days=9),
                   lambda d: d["departments"][0].update(region="999999"),
                   lambda d: d["departments"][0].update(self_built=True),
                   lambda d: d.update(timezone="UTC")):
        changed = copy.deepcopy(raw)
        change(changed)
        assert judges_otherwise(base, judge_of(changed)), changed
