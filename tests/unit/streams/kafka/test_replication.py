"""Replication rules: one factor for every topic, min.insync.replicas with it, unsafe refused."""

from __future__ import annotations

import pytest

from streams.kafka.errors import ReplicationRefused, TopicAdminError
from streams.kafka.topics import (
    ReplicationPlan,
    faust_app_kwargs,
    faust_table_kwargs,
    lender_topic_configs,
    plan_replication,
    retention_config,
)
from streams.settings import Settings


@pytest.mark.parametrize(("brokers", "factor", "min_insync"),
                         [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_unset_means_min_three_brokers(brokers: int, factor: int, min_insync: int) -> None:
    assert plan_replication(None, brokers) == ReplicationPlan(factor, min_insync, brokers)


@pytest.mark.parametrize(("configured", "brokers", "factor", "min_insync"),
                         [(1, 1, 1, 1), (2, 3, 2, 1), (3, 3, 3, 2), (5, 5, 5, 2), (4, 6, 4, 2)])
def test_explicit_factor_is_used(configured: int, brokers: int, factor: int,
                                 min_insync: int) -> None:
    plan = plan_replication(configured, brokers)
    assert (plan.factor, plan.min_insync) == (factor, min_insync)
    assert plan.topic_configs() == {"min.insync.replicas": str(min_insync)}


@pytest.mark.parametrize("brokers", [2, 3, 6])
def test_single_replica_on_a_multi_broker_cluster_is_refused(brokers: int) -> None:
    with pytest.raises(ReplicationRefused, match="single replica"):
        plan_replication(1, brokers)


def test_more_replicas_than_brokers_and_no_broker_are_refused() -> None:
    with pytest.raises(ReplicationRefused, match="exceeds the 2 broker"):
        plan_replication(3, 2)
    with pytest.raises(ReplicationRefused, match="no broker"):
        plan_replication(None, 0)
    assert issubclass(ReplicationRefused, TopicAdminError)  # CLI paths report it as usage


def test_the_setting_refuses_zero() -> None:
    with pytest.raises(ValueError):
        Settings(kafka_replication_factor=0)
    assert Settings().kafka_replication_factor is None


def test_faust_kwargs_follow_the_plan() -> None:
    plan = plan_replication(None, 3)
    assert faust_app_kwargs(plan) == {"topic_replication_factor": 3}
    assert faust_table_kwargs(plan) == {"extra_topic_configs": {"min.insync.replicas": "2"}}
    single = plan_replication(None, 1)
    assert faust_app_kwargs(single) == {"topic_replication_factor": 1}
    assert faust_table_kwargs(single) == {"extra_topic_configs": {"min.insync.replicas": "1"}}


def test_retention_configs() -> None:
    assert retention_config(168) == {"cleanup.policy": "delete", "retention.ms": "604800000",
                                     "segment.ms": "86400000"}
    assert retention_config(2)["segment.ms"] == "7200000"
    configs = lender_topic_configs(Settings(lender_topic_retention_hours=24))
    assert configs["loans"] == configs["consent"] == {
        "cleanup.policy": "delete", "retention.ms": "86400000", "segment.ms": "86400000",
        "message.timestamp.type": "LogAppendTime"}
    assert configs["rejected"] == {"cleanup.policy": "delete", "retention.ms": "86400000",
                                   "segment.ms": "86400000"}


def test_a_faust_app_built_with_the_kwargs_declares_its_changelog_with_the_plan(
        tmp_path) -> None:
    import faust

    plan = plan_replication(None, 3)
    app = faust.App("replication-probe", broker="kafka://127.0.0.1:1", store="memory://",
                    datadir=str(tmp_path), web_enabled=False, autodiscover=False,
                    **faust_app_kwargs(plan))
    table = app.Table("borrower-state", partitions=6, **faust_table_kwargs(plan))
    assert app.conf.topic_replication_factor == 3
    changelog = table.changelog_topic
    assert changelog.get_topic_name() == "replication-probe-borrower-state-changelog"
    assert changelog.config == {"min.insync.replicas": "2"}
    assert changelog.compacting  # Faust keeps changelogs compacted
