"""The simulator's cancels, without Kafka: their rate, their kinds (a cancel shortly after its
event, one beyond the grace period, one published before its event), that each names an event
of the same lender and borrower, that they pass the lender contract, that they leave the rest
of a seeded history alone, and how the ground truth admits them and what they withdraw."""

from __future__ import annotations

from collections import Counter

import pytest

from schemas.codec import LOAN_EVENT, codec_for
from schemas.fast_encode import encode_loan_event
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from schemas.validation import ValidationLimits, check_loan_record
from streams.lender.ground_truth import TruthBuilder
from streams.lender.population import GRACE_HOURS, HOUR_MS
from streams.lender.scenario import Scenario, build_scenario, live_items
from streams.lender.sim_types import CANCEL_TAGS, ItemKind, SimItem, SimulationParams
from tests.support.oracle import counted_events

NOW_MS = 1_795_000_000_000  # 2026-11-18T08:26:40Z
GRACE_MS = GRACE_HOURS * HOUR_MS
PARAMS = SimulationParams(seed=7, borrowers=3000, now_ms=NOW_MS, consent_rate=0.5,
                          duplicate_rate=0.02, late_rate=0.03)


def _is_cancel(item: SimItem) -> bool:
    return item.kind is ItemKind.LOAN and item.loan.event_type is EventType.CANCEL


def _originals(items: list[SimItem]) -> list[SimItem]:
    """Loan items that are not cancels nor re-sends."""
    return [i for i in items if i.kind is ItemKind.LOAN and i.tag != "duplicate"
            and i.loan.event_type is not EventType.CANCEL]


def _cancels(items: list[SimItem]) -> list[SimItem]:
    return [i for i in items if _is_cancel(i) and i.tag != "duplicate"]


def _truth(items: list[SimItem], scenario: Scenario):
    builder = TruthBuilder(scenario.params.to_json(), NOW_MS,
                           [lender.lender_id for lender in scenario.lenders],
                           {b.borrower_id: b.profile.value for b in scenario.borrowers})
    for item in items:
        if item.kind is ItemKind.CONSENT:
            builder.observe_consent(item.consent)
        elif item.kind is ItemKind.LOAN:
            builder.observe_loan(item.lender_id, item.loan)
        else:
            builder.observe_raw(item.lender_id, item.reason)
    return builder.build()


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build_scenario(PARAMS)


def test_cancel_rate_is_per_loan_event() -> None:
    params = SimulationParams(**{**PARAMS.to_json(), "cancel_rate": 0.02})
    items = build_scenario(params).items
    share = len(_cancels(items)) / len(_originals(items))
    assert 0.016 <= share <= 0.024, share
    assert not _cancels(build_scenario(
        SimulationParams(**{**PARAMS.to_json(), "cancel_rate": 0.0})).items)


def test_default_rate_is_a_few_per_thousand(scenario) -> None:
    assert SimulationParams().cancel_rate == 0.003
    share = len(_cancels(scenario.items)) / len(_originals(scenario.items))
    assert 0.0015 <= share <= 0.0045, share


def test_every_cancel_names_an_event_of_its_lender_and_borrower(scenario) -> None:
    """Each kind is present for this seed, and each cancel keeps its kind's promise."""
    items = scenario.items
    first_at: dict[str, int] = {}  # event id -> position of its first publication
    for n, item in enumerate(items):
        if item.kind is ItemKind.LOAN:
            first_at.setdefault(item.loan.event_id, n)
    events = {i.loan.event_id: i.loan for i in _originals(items)}
    cancels = _cancels(items)
    kinds = Counter(i.tag for i in cancels)
    assert set(kinds) == set(CANCEL_TAGS), kinds
    assert kinds["cancel"] > kinds["cancel_late"] > 0 and kinds["cancel_before"] > 0
    ids = [i.loan.event_id for i in cancels]
    assert len(set(ids)) == len(ids) and not set(ids) & set(events)  # fresh ids
    for item in cancels:
        cancel = item.loan
        target = events[cancel.cancels_event_id]
        assert (cancel.lender_id, cancel.borrower_id, cancel.loan_id) == (
            target.lender_id, target.borrower_id, target.loan_id)
        assert item.lender_id == cancel.lender_id
        assert cancel.amount_minor == 0 and cancel.event_id != target.event_id
        assert target.occurred_at_ms <= cancel.occurred_at_ms < NOW_MS
        assert item.seq_ms >= cancel.occurred_at_ms
        here, there = first_at[cancel.event_id], first_at[target.event_id]
        if item.tag == "cancel_before":
            assert here < there  # published before the event it cancels
        else:
            assert here > there
        if item.tag == "cancel_late":
            assert cancel.occurred_at_ms - target.occurred_at_ms > GRACE_MS
        elif item.tag == "cancel":
            assert cancel.occurred_at_ms - target.occurred_at_ms <= 36 * HOUR_MS


def test_cancels_pass_the_lender_contract(scenario) -> None:
    codec = codec_for(LOAN_EVENT)
    for item in _cancels(scenario.items):
        record = codec.decode(encode_loan_event(item.loan))
        checked = check_loan_record(record, lender_id=item.lender_id, now_ms=NOW_MS,
                                    limits=ValidationLimits())
        assert checked == item.loan


def test_cancels_leave_the_rest_of_the_history_alone(scenario) -> None:
    """With or without cancels, the same events (ids, times, amounts) in the same order,
    except that the targets of cancels published before them are published later."""
    without = build_scenario(SimulationParams(**{**PARAMS.to_json(), "cancel_rate": 0.0}))
    ours = [i for i in scenario.items if not _is_cancel(i)]
    assert Counter(i.loan or i.consent or i.value for i in ours) == Counter(
        i.loan or i.consent or i.value for i in without.items)
    moved = {i.loan.cancels_event_id for i in _cancels(scenario.items)
             if i.tag == "cancel_before"}
    assert [i for i in ours if not (i.loan and i.loan.event_id in moved)] == [
        i for i in without.items if not (i.loan and i.loan.event_id in moved)]


def test_live_items_cancel_too() -> None:
    scenario = build_scenario(SimulationParams(**{**PARAMS.to_json(), "cancel_rate": 0.02}))
    history = {ev.event_id: ev for ev in scenario.history_events}
    kinds: Counter[str] = Counter()
    for batch in range(20):
        now = NOW_MS + 60_000 + batch * 1000
        items = live_items(scenario, now, 500)
        position = {}
        for n, item in enumerate(items):
            if item.kind is ItemKind.LOAN:
                position.setdefault(item.loan.event_id, n)
        live = {i.loan.event_id: i.loan for i in _originals(items)}
        for item in _cancels(items):
            cancel = item.loan
            kinds[item.tag] += 1
            assert cancel.occurred_at_ms <= now
            if item.tag == "cancel_late":  # of a history event beyond the grace period
                target = history[cancel.cancels_event_id]
                assert now - target.occurred_at_ms > GRACE_MS
            else:
                target = live[cancel.cancels_event_id]
                before = position[cancel.event_id] < position[target.event_id]
                assert before is (item.tag == "cancel_before")
            assert (target.lender_id, target.borrower_id) == (cancel.lender_id,
                                                              cancel.borrower_id)
            assert target.occurred_at_ms <= cancel.occurred_at_ms
    assert set(kinds) == set(CANCEL_TAGS), kinds


def test_truth_admits_cancels_like_events_and_counts_what_they_withdraw(scenario) -> None:
    truth = _truth(scenario.items, scenario)
    cancels = [ev for ev in truth.admitted if ev.event_type == "cancel"]
    assert cancels and all(ev.cancels_event_id for ev in cancels)
    assert all(not ev.cancels_event_id for ev in truth.admitted if ev.event_type != "cancel")
    figures = truth.cancels
    assert figures["published"] == sum(1 for i in scenario.items if _is_cancel(i))
    assert figures["admitted"] == len(cancels)
    assert figures["admitted"] >= figures["effective"] > 0
    assert figures["effective_late"] > 0 and figures["effective_before_target"] > 0
    counted = truth.counted()
    assert counted == counted_events(truth.admitted)  # the tests' oracle agrees
    assert len(truth.admitted) - len(counted) == len(cancels) + len(truth.cancelled() & {
        (ev.borrower_id, ev.lender_id, ev.event_id) for ev in truth.admitted})


def test_truth_cancel_rules_by_hand() -> None:
    """Consent at the cancel's own time, de-dup by its own id, same borrower and lender,
    whenever the target arrives; cancels of cancels and of rejected events withdraw nothing."""
    builder = TruthBuilder({}, NOW_MS, ["a", "z"], {"b1": "monthly", "b2": "monthly"})
    for lender, borrower in (("a", "b1"), ("a", "b2"), ("z", "b1")):
        builder.observe_consent(ConsentRecord(lender, borrower, ConsentAction.GRANT, 100))
    builder.observe_consent(ConsentRecord("a", "b1", ConsentAction.REVOKE, 10_000))

    def draw(eid: str, t: int, lender: str = "a", borrower: str = "b1") -> LoanEvent:
        return LoanEvent(eid, lender, borrower, "l", EventType.DRAW, 100, "CNY", t)

    def cancel(eid: str, t: int, target: str, lender: str = "a",
               borrower: str = "b1") -> LoanEvent:
        return LoanEvent(eid, lender, borrower, "l", EventType.CANCEL, 0, "CNY", t,
                         cancels_event_id=target)

    published = [
        draw("e1", 200), cancel("c1", 300, "e1"),  # withdrawn
        cancel("c1", 300, "e1"),  # re-sent: DUPLICATE
        cancel("c2", 400, "c1"),  # a cancel of a cancel: nothing
        draw("e2", 500), cancel("c3", 20_000, "e2"),  # the cancel has no consent: e2 counts
        cancel("c4", 700, "e3"), draw("e3", 600),  # published before its event: withdrawn
        draw("e4", 50), cancel("c5", 800, "e4"),  # e4 without consent: nothing to withdraw
        draw("e5", 900, borrower="b2"), cancel("c6", 950, "e5"),  # another borrower: nothing
        draw("e6", 900, lender="z"), cancel("c7", 960, "e6"),  # another lender: nothing
        draw("e7", 1000), cancel("c8", 1000 + GRACE_MS + 1, "e7"),  # after the revoke: nothing
        draw("e8", 1100), cancel("c9", 1200, "e8"), cancel("c10", 1300, "e8"),  # twice
    ]
    for ev in published:
        builder.observe_loan(ev.lender_id, ev)
    truth = builder.build()
    assert [ev.event_id for ev in truth.admitted] == [
        "e1", "c1", "c2", "e2", "c4", "e3", "c5", "e5", "c6", "e6", "c7", "e7", "e8", "c9",
        "c10"]
    assert truth.rejections == {"a": {"DUPLICATE": 1, "NO_CONSENT": 3}}
    assert [ev.event_id for ev in truth.counted()] == ["e2", "e5", "e6", "e7"]
    assert truth.cancels == {"published": 11, "admitted": 8, "effective": 4,
                             "effective_late": 0, "effective_before_target": 1}
    assert [ev.cancels_event_id for ev in truth.admitted if ev.event_id == "c4"] == ["e3"]
