"""The simulator without Kafka: reproducibility, profile rhythms, consent share, injected
malformations and the causality rule the stream relies on."""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from statistics import mean

import pytest

from schemas.codec import LOAN_EVENT, codec_for
from schemas.errors import MalformedRecordError, UnknownSchemaError, ValidationError
from schemas.reasons import RejectReason
from schemas.records import ConsentAction, EventType
from schemas.validation import ValidationLimits, check_loan_record
from streams.lender.ground_truth import GroundTruth, TruthBuilder
from streams.lender.scenario import MALFORMATIONS, build_scenario, generate_sequence
from streams.lender.sim_types import ItemKind, SimItem, SimulationParams

NOW_MS = 1_795_000_000_000  # 2026-11-18T08:26:40Z
PARAMS = SimulationParams(seed=42, borrowers=1500, now_ms=NOW_MS, malformed_rate=0.01)


@pytest.fixture(scope="module")
def scenario():
    return build_scenario(PARAMS)


def truth_of(items: list[SimItem], scenario) -> GroundTruth:
    """Feed the items to the truth builder as run_simulation does (publish order)."""
    builder = TruthBuilder(
        PARAMS.to_json(), NOW_MS, [lender.lender_id for lender in scenario.lenders],
        {b.borrower_id: b.profile.value for b in scenario.borrowers},
    )  # fmt: skip
    for item in items:
        if item.kind is ItemKind.CONSENT:
            builder.observe_consent(item.consent)
        elif item.kind is ItemKind.LOAN:
            builder.observe_loan(item.lender_id, item.loan)
        else:
            builder.observe_raw(item.lender_id, item.reason)
    return builder.build()


def test_same_seed_gives_identical_sequence() -> None:
    first = list(generate_sequence(PARAMS))
    second = list(generate_sequence(PARAMS))
    assert first == second
    other = list(generate_sequence(SimulationParams(seed=43, borrowers=1500, now_ms=NOW_MS)))
    assert {i.loan.event_id for i in other if i.loan}.isdisjoint(
        i.loan.event_id for i in first if i.loan
    )


def test_history_spans_the_window_ending_at_now(scenario) -> None:
    loans = [i.loan for i in scenario.items if i.kind is ItemKind.LOAN]
    assert all(NOW_MS - 30 * 86_400_000 <= ev.occurred_at_ms < NOW_MS for ev in loans)
    seq = [i.seq_ms for i in scenario.items]
    assert seq == sorted(seq)


def test_profiles_have_their_designed_frequencies(scenario) -> None:
    draws: Counter[str] = Counter()
    for item in scenario.items:
        loan = item.loan
        if item.tag != "duplicate" and loan is not None and loan.event_type is EventType.DRAW:
            draws[loan.borrower_id] += 1
    per_profile = defaultdict(list)
    for b in scenario.borrowers:
        per_profile[b.profile.value].append(draws[b.borrower_id])
    monthly, ten = mean(per_profile["monthly"]), mean(per_profile["ten_a_month"])
    assert 0.8 <= monthly <= 1.2
    assert 8 <= ten / monthly <= 12
    assert 3.3 <= mean(per_profile["weekly"]) <= 5
    # stackers draw from at least three lenders, bursty borrowers several times within a day
    lenders_of = defaultdict(set)
    times_of = defaultdict(list)
    for item in scenario.items:
        if item.kind is ItemKind.LOAN and item.loan.event_type is EventType.DRAW:
            lenders_of[item.loan.borrower_id].add(item.lender_id)
            times_of[item.loan.borrower_id].append(item.loan.occurred_at_ms)
    stackers = [b for b in scenario.borrowers if b.profile.value == "stacker"]
    assert mean(len(lenders_of[b.borrower_id]) >= 3 for b in stackers) > 0.9
    for b in scenario.borrowers:
        if b.profile.value == "bursty":
            times = sorted(times_of[b.borrower_id])
            assert any(t2 - t1 < 86_400_000 for t1, t2 in zip(times, times[2:], strict=False))
    # defaulters end with a default
    defaulted = {i.loan.borrower_id for i in scenario.items
                 if i.kind is ItemKind.LOAN and i.loan.event_type is EventType.DEFAULT}  # fmt: skip
    defaulters = [b.borrower_id for b in scenario.borrowers if b.profile.value == "defaulter"]
    assert mean(bid in defaulted for bid in defaulters) > 0.5
    assert defaulted <= set(defaulters)


def test_consent_rate_is_per_borrower_and_lender(scenario) -> None:
    pairs = {(b.borrower_id, lid) for b in scenario.borrowers for lid in b.lenders}
    consent = [i.consent for i in scenario.items if i.consent is not None]
    granted = {(c.borrower_id, c.lender_id) for c in consent if c.action is ConsentAction.GRANT}
    assert granted <= pairs
    assert 0.25 <= len(granted) / len(pairs) <= 0.35
    assert any(c.action is ConsentAction.REVOKE for c in consent), "some revoke later"
    assert all(c.effective_at_ms <= NOW_MS for c in consent)
    # some grants come part-way through the history, so earlier events are not admitted
    assert any(c.effective_at_ms > NOW_MS - 30 * 86_400_000 for c in consent)


def test_causality_consent_precedes_later_loans(scenario) -> None:
    """Every consent item comes before each loan item whose event time is at or after its
    effective time (so it can be acknowledged before those loans are sent)."""
    position = {id(item): n for n, item in enumerate(scenario.items)}
    consents = [i for i in scenario.items if i.kind is ItemKind.CONSENT]
    loans = sorted((i for i in scenario.items if i.kind is ItemKind.LOAN),
                   key=lambda i: i.loan.occurred_at_ms)  # fmt: skip
    # the earliest-positioned loan at or after each consent's effective time comes later
    times = [i.loan.occurred_at_ms for i in loans]
    suffix_min = [0] * (len(loans) + 1)
    suffix_min[len(loans)] = 2**62
    for n in range(len(loans) - 1, -1, -1):
        suffix_min[n] = min(position[id(loans[n])], suffix_min[n + 1])
    for consent in consents:
        first = bisect.bisect_left(times, consent.consent.effective_at_ms)
        assert position[id(consent)] < suffix_min[first]


def test_duplicates_and_late_events_are_injected(scenario) -> None:
    tags = Counter(i.tag for i in scenario.items if i.kind is ItemKind.LOAN)
    assert tags["duplicate"] > 0 and tags["late"] > 0
    first_seen: dict[str, int] = {}
    for n, item in enumerate(scenario.items):
        if item.kind is ItemKind.LOAN:
            first_seen.setdefault(item.loan.event_id, n)
            if item.tag == "duplicate":
                assert first_seen[item.loan.event_id] < n  # an exact re-send of an earlier one
    late = [i for i in scenario.items if i.tag == "late"]
    delays = [i.seq_ms - i.loan.occurred_at_ms for i in late]
    assert all(d > 0 for d in delays)
    assert any(d > 72 * 3_600_000 for d in delays), "some late events are beyond 72 h"


def test_every_malformation_is_rejected_with_its_reason(scenario) -> None:
    raw = [i for i in scenario.items if i.kind is ItemKind.RAW]
    assert {i.tag for i in raw} == set(MALFORMATIONS)
    truth = truth_of(scenario.items, scenario)
    for reason in MALFORMATIONS.values():
        assert truth.rejected_total(reason) > 0
    # the injected reason is what the contract's own decoder and checks say
    codec = codec_for(LOAN_EVENT)
    limits = ValidationLimits()
    for item in raw:
        try:
            check_loan_record(codec.decode(item.value), lender_id=item.lender_id,
                              now_ms=NOW_MS, limits=limits)  # fmt: skip
        except (MalformedRecordError, UnknownSchemaError, ValidationError) as exc:
            assert exc.reason is item.reason, item.tag
        else:
            raise AssertionError(f"{item.tag} was accepted")


def test_truth_counts_duplicates_and_consent(scenario) -> None:
    truth = truth_of(scenario.items, scenario)
    assert truth.rejected_total(RejectReason.DUPLICATE) == sum(
        1 for i in scenario.items if i.tag == "duplicate"
    )
    assert truth.rejected_total(RejectReason.NO_CONSENT) > len(truth.admitted)  # most don't
    loans = sum(1 for i in scenario.items if i.kind is ItemKind.LOAN)
    assert loans == len(truth.admitted) + truth.rejected_total(
        RejectReason.DUPLICATE
    ) + truth.rejected_total(RejectReason.NO_CONSENT)
    written = truth.to_json()
    assert json.loads(json.dumps(written)) == written  # the --truth file is plain JSON


def test_consent_in_force_rule_revoke_wins_ties() -> None:
    from schemas.records import ConsentRecord, LoanEvent

    builder = TruthBuilder({}, NOW_MS, ["a"], {"b1": "monthly"})
    builder.observe_consent(ConsentRecord("a", "b1", ConsentAction.GRANT, 100))
    builder.observe_consent(ConsentRecord("a", "b1", ConsentAction.REVOKE, 200))
    builder.observe_consent(ConsentRecord("a", "b1", ConsentAction.GRANT, 200))

    def ev(eid: str, t: int) -> LoanEvent:
        return LoanEvent(eid, "a", "b1", "l", EventType.DRAW, 100, "CNY", t)

    for eid, t in (("before", 99), ("granted", 100), ("tie", 200), ("again", 150)):
        builder.observe_loan("a", ev(eid, t))
    builder.observe_loan("a", ev("granted", 150))  # duplicate id
    truth = builder.build()
    assert [e.event_id for e in truth.admitted] == ["granted", "again"]
    assert truth.rejections == {"a": {"DUPLICATE": 1, "NO_CONSENT": 2}}


def test_publisher_refuses_unsafe_overrides_and_other_lenders() -> None:
    import asyncio

    from schemas.records import LoanEvent
    from streams.lender.errors import UnsafePublisherSettings, WrongLender
    from streams.lender.publisher import LenderPublisher
    from streams.settings import Settings

    settings = Settings()
    for overrides in ({"acks": 1}, {"acks": 0}, {"enable_idempotence": False}):
        with pytest.raises(UnsafePublisherSettings):
            LenderPublisher(settings, "jd-baitiao", producer_options=overrides)
    unsafe = settings.model_copy(update={"publisher_acks": "1"})  # bypasses Settings' check
    with pytest.raises(UnsafePublisherSettings):
        LenderPublisher(unsafe, "jd-baitiao")
    publisher = LenderPublisher(settings, "jd-baitiao")
    foreign = LoanEvent("e1", "ant-huabei", "b", "l", EventType.DRAW, 100, "CNY", NOW_MS)
    with pytest.raises(WrongLender):
        asyncio.run(publisher.publish_event(foreign))
