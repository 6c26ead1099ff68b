"""The Grafana dashboard is valid JSON, laid out without overlaps, on the provisioned data
source, and queries only metric names the registry exports (here from a fresh registry; the
integration test ``test_metrics_scrape`` checks the same against a running worker's scrape)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from streams.runtime.metrics import Metrics
from tests.support.promql import dashboard_exprs, exposed_names, metric_names

REPO = Path(__file__).resolve().parents[3]
GRAFANA = REPO / "infra" / "grafana"
DASHBOARD = GRAFANA / "registry-dashboard.json"


def _panels(node: dict) -> list[dict]:
    out = []
    for panel in node.get("panels", []):
        out.append(panel)
        out.extend(_panels(panel))
    return out


def test_dashboard_is_json_with_unique_ids_and_no_overlaps() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "credit-registry"
    panels = _panels(doc)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]


def test_every_query_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (uid,) = [d["uid"] for d in provisioned["datasources"]]
    for panel in _panels(json.loads(DASHBOARD.read_text())):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid, panel["title"]


def test_every_queried_metric_is_exported() -> None:
    exported = exposed_names(Metrics().render())
    exprs = dashboard_exprs(DASHBOARD)
    assert len(exprs) == 26
    queried = set().union(*(metric_names(e) for e in exprs))
    assert queried <= exported, sorted(queried - exported)
    assert "registry_sink_dead_letter_rows_total" in queried
    assert "registry_freshness_watermark_seconds" in queried


def test_the_name_reader_sees_through_promql() -> None:
    expr = ('histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="x",le!="1e3"}[5m] '
            'offset 1h))) / on (group) group_left (status) b_total * 2e3 > bool 1 and c')
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert metric_names("time() - max(registry_freshness_watermark_seconds)") == {
        "registry_freshness_watermark_seconds"}
