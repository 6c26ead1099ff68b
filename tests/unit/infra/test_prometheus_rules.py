"""The alert rules of ``infra/prometheus`` pass Prometheus' own checks and unit tests.

``promtool`` (Debian's ``prometheus`` package, installed by ``make setup``) checks the config
and the rule files, and runs the rule unit tests of ``infra/prometheus/tests/*.yml``: recorded
series in, the exact alerts (labels and annotations) expected at given times out. A broken
expectation must make ``promtool test rules`` fail, so a passing run means something.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.runtime.metrics import Metrics
from tests.support.promql import exposed_names, metric_names, rule_exprs

REPO = Path(__file__).resolve().parents[3]
PROM = REPO / "infra" / "prometheus"
ALERTS = PROM / "alerts.yml"
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
#: Series Prometheus makes itself for every scrape target.
SYNTHETIC = {"up"}


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make setup` installs Debian's prometheus package"
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def alert_names() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule["alert"] for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_config_and_its_rule_files_check() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_rules_check() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    assert [p.name for p in RULE_TESTS] == ["alerts_test.yml"]
    result = promtool("test", "rules", *(str(p) for p in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    doc = yaml.safe_load(RULE_TESTS[0].read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == set(alert_names())
    assert quiet == set(alert_names())


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """Negative control: the same series, but expecting silence where STOPPED fires."""
    doc = yaml.safe_load(RULE_TESTS[0].read_text())
    case = doc["tests"][0]
    assert case["alert_rule_test"][1]["alertname"] == "RegistryConsumerGroupStopped"
    case["alert_rule_test"][1]["exp_alerts"] = []
    broken = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": [case]}
    path = tmp_path / "broken_test.yml"
    path.write_text(yaml.safe_dump(broken))
    result = promtool("test", "rules", str(path))
    assert result.returncode != 0
    assert "RegistryConsumerGroupStopped" in result.stdout + result.stderr


@pytest.mark.parametrize("expr", rule_exprs(ALERTS))
def test_rules_query_only_metrics_the_registry_exports(expr: str) -> None:
    exported = exposed_names(Metrics().render()) | SYNTHETIC
    assert metric_names(expr), expr
    assert metric_names(expr) <= exported, metric_names(expr) - exported


def test_readme_names_every_alert() -> None:
    readme = (REPO / "README.md").read_text()
    for name in alert_names():
        assert re.search(rf"`{name}`", readme), name
