"""deploy/: Prometheus config and rules, their unit tests, Alertmanager routing and the Grafana
dashboard, checked with the real tools (promtool, amtool) and against the metrics newswatch exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

import pipelines.telemetry  # noqa: F401  (registers newswatch's metrics in REGISTRY)
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "newswatch.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "newswatch.yml"

# The series each metric type puts on /metrics (created samples are disabled in telemetry).
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "unknown": ("",),
}
DEBIAN_PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus", "amtool": "prometheus-alertmanager"}
# Series that Prometheus itself adds to every scrape target.
SCRAPE_SERIES = {"up"}
PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def require_binary(name: str) -> str:
    """The binary's path; skip when it is missing, except in CI, where a missing tool is a failure."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package {DEBIAN_PACKAGES[name]}; `make test` installs it where it can)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary(args[0]), *args[1:]], capture_output=True, text=True, timeout=60)


def exported_series() -> set[str]:
    """Every series name this process can put on /metrics: newswatch's and prometheus-client's own."""
    return {family.name + suffix for family in REGISTRY.collect() for suffix in SAMPLE_SUFFIXES[family.type]}


def alert_rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def recorded_series() -> set[str]:
    return {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def with_grafana_variables_filled(expr: str) -> str:
    """PromQL as Grafana sends it: its interval variables become durations, ours (used only
    inside label matchers, as in feed=~"$feed") a regex matching every value."""
    return re.sub(r"\$\w+", ".*", re.sub(r"\$__\w+", "5m", expr))


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers left once strings, label
    matchers, ranges and label lists are removed, that are not functions or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", expr):
        if not expr[match.end() :].lstrip().startswith("(") and match.group() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def test_metric_names_reads_selectors_not_functions_labels_or_durations():
    expr = (
        '1 - sum by (job, feed) (rate(a_total{outcome=~"ok|x"}[15m] offset 1h)) / on (job) group_left '
        "sum(b:rec:ratio) > 3 * (c or time() - d) and vector(0)"
    )
    assert metric_names(expr) == {"a_total", "b:rec:ratio", "c", "d"}


def test_prometheus_config_and_rules_pass_promtool_check():
    result = run_tool("promtool", "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout
    result = run_tool("promtool", "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    result = run_tool("promtool", "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", "\n".join(path.read_text() for path in RULE_TESTS)))
    assert tested == {rule["alert"] for rule in alert_rules()}, "every alert has a unit test"


def test_alerts_carry_severity_service_and_a_runbook():
    rules = alert_rules()
    assert {
        "NewswatchFeedFailing",
        "NewswatchNoItemsIngested",
        "NewswatchFetchErrorRatioHigh",
        "NewswatchAlertDeliveriesFailing",
        "NewswatchActorMentionsSpike",
    } <= {rule["alert"] for rule in rules}
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket", "info"), rule["alert"]
        assert rule["labels"]["service"] == "newswatch", rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_alertmanager_config_passes_amtool_and_routes_faults_and_news_apart():
    result = run_tool("amtool", "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    for severity, receiver in (
        ("page", "newswatch-operators"),
        ("ticket", "newswatch-operators"),
        ("info", "newswatch-newsroom"),
    ):
        result = run_tool(
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--verify.receivers={receiver}",
            "service=newswatch",
            f"severity={severity}",
        )
        assert result.returncode == 0, f"severity={severity}: {result.stdout}{result.stderr}"


def test_every_dashboard_expression_parses(tmp_path):
    # promtool has no parse-only command in 2.42 (nor Prometheus a parse_query API), so each
    # expression becomes a recording rule and `promtool check rules` parses it.
    rules = [
        {"record": f"dashboard:check:{number}", "expr": with_grafana_variables_filled(expr)}
        for number, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_tool("promtool", "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_and_rules_select_only_series_newswatch_exports():
    known = exported_series() | recorded_series() | SCRAPE_SERIES
    rule_exprs = [
        rule["expr"] for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]
    dashboard = json.loads(DASHBOARD.read_text())
    variable_metrics = {
        re.match(r"label_values\((\w+)", variable["definition"]).group(1) for variable in dashboard["templating"]["list"]
    }
    used = {name for expr in [*dashboard_exprs(), *rule_exprs] for name in metric_names(expr)} | variable_metrics
    assert used - known == set()
    assert {name for name in used if name.startswith("newswatch_")}, "the check found the newswatch metrics"


def test_dashboard_panels_use_the_provisioned_data_source():
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert all(target["datasource"]["uid"] == uid for target in panel["targets"]), panel["title"]
