"""The Prometheus and Alertmanager files in deploy/ pass their own tools: `promtool check rules`,
`promtool check config`, `promtool test rules` (every rule firing and not firing) and
`amtool check-config`. CI installs Debian's prometheus and prometheus-alertmanager."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "sunlight.rules.yml"
RULE_TESTS = PROMETHEUS / "rules" / "sunlight.rules.test.yml"
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool is missing: apt-get install prometheus "
                                                              "(Debian's package ships it; CI installs it)")


def _run(*args: str, cwd: Path = PROMETHEUS) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@needs_promtool
def test_rules_are_valid():
    out = _run(promtool, "check", "rules", str(RULES))
    rules = [r["alert"] for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in out


@needs_promtool
def test_config_is_valid_and_loads_the_rules():
    out = _run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "SUCCESS: 1 rule files found" in out and "sunlight.rules.yml" in out


@needs_promtool
def test_every_rule_is_unit_tested_firing_and_not_firing():
    out = _run(promtool, "test", "rules", str(RULE_TESTS), cwd=RULE_TESTS.parent)
    assert "SUCCESS" in out
    rules = {r["alert"] for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]}
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
             for case in test.get("alert_rule_test", [])]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert firing == rules and quiet == rules


def test_rules_speak_chinese_to_people_and_label_severity():
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            for key in ("summary", "description"):
                text = rule["annotations"][key]
                assert any("\u4e00" <= ch <= "\u9fff" for ch in text), (rule["alert"], key)


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool is missing: apt-get install "
                                                          "prometheus-alertmanager (CI installs it)")
def test_alertmanager_config_is_valid():
    out = _run("amtool", "check-config", str(ALERTMANAGER))
    assert "SUCCESS" in out


@needs_promtool
def test_the_health_dashboards_legends_read_in_chinese_in_prometheus_itself(tmp_path):
    """The health panels' legends showed the metrics' label codes (unknown_item, level_1,
    skipped_node red), found by a black-box test; each panel's query now gives the titles, which
    promtool's PromQL engine evaluates here. A code without a title stays as it is."""
    from dashboards.build import HEALTH_PANELS

    queries = {legend: expr.replace("$__rate_interval", "5m") for panel in HEALTH_PANELS
               for expr, legend in panel.exprs if "{{" in legend and "topic" not in legend}
    series = [("sunlight_events_processed_total", 'outcome="new"'),
              ("sunlight_events_dead_lettered_total", 'reason="unknown_item"'),
              ("sunlight_events_dead_lettered_total", 'reason="some_new_reason"'),
              ("sunlight_notices_total", 'step="level_1", status="failed"'),
              ("sunlight_alerts_raised_total", 'rule="skipped_node", severity="red"')]
    expected = {"{{outcome}}": [('{outcome="新事件"}', 1)],
                "{{reason}}": [('{reason="未知事项"}', 1), ('{reason="some_new_reason"}', 1)],
                "{{step}}": [('{step="升级至部门负责人"}', 300)],
                "{{severity}}·{{rule}}": [('{rule="跳过环节", severity="红牌"}', 60)]}
    assert set(queries) == set(expected)
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": f"{name}{{{labels}}}", "values": "0+60x20"} for name, labels in series],
        "promql_expr_test": [{"expr": queries[legend], "eval_time": "10m",
                              "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}
                             for legend, samples in expected.items()]}]}
    path = tmp_path / "legends.test.yml"
    path.write_text(yaml.safe_dump(tests, allow_unicode=True), encoding="utf-8")
    _run(promtool, "test", "rules", str(path), cwd=tmp_path)


def test_the_dead_letter_rule_leaves_out_exactly_the_overtaken_ticket_actions():
    """Found by a black-box test: two people acting on one ticket (a stale second tab) made
    stale_version letters that set off SunlightDeadLettersGrowing ("这些办件不会被评判…redrive"),
    though the person was told at once and nothing waits to be redriven. An action refused as an
    error of what sent it (an OA system's malformed reply: nobody is told) still counts (review)."""
    import re

    from alerts.letters import OVERTAKEN_ACTIONS, REASON_TITLE

    rule = next(r for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]
                if r["alert"] == "SunlightDeadLettersGrowing")
    left_out = re.search(r'reason!~"([^"]+)"', rule["expr"]).group(1).split("|")
    assert set(left_out) == OVERTAKEN_ACTIONS and OVERTAKEN_ACTIONS < set(REASON_TITLE)
    # Reasons alerts.tickets refuses an action for, the others errors of what sent it.
    source = (REPO / "alerts" / "tickets.py").read_text(encoding="utf-8")
    refusals = set(re.findall(r'ActionRefused\("([a-z_]+)"', source))
    assert OVERTAKEN_ACTIONS < refusals and {"malformed_action", "wrong_department"} <= refusals - OVERTAKEN_ACTIONS
