"""The Prometheus rule file: valid YAML, same condition as the in-process alert, on a series /metrics has."""

from __future__ import annotations

from pathlib import Path

import yaml

from sentiflow.settings.components import AlertSettings
from serving import metrics

RULES = Path(__file__).resolve().parents[3] / "serving" / "alert_rules.yml"


def test_wrong_prediction_rule_matches_the_settings_and_the_served_counter() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    expr = rules["SentiflowWrongPredictions"]["expr"]
    defaults = AlertSettings()
    counter = f"{metrics.FEEDBACK._name}_total"
    assert f'{counter}{{outcome="wrong"}}' in expr
    assert f"[{int(defaults.window_s // 60)}m]" in expr
    assert expr.strip().endswith(f">= {defaults.wrong_threshold}")
    assert all(r["labels"]["severity"] for r in rules.values())
