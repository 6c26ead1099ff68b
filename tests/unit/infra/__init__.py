"""Unit tests of ``infra/``: Grafana dashboards, Prometheus rules, the Compose file."""
