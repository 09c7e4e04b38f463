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
