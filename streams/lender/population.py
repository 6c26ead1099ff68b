"""Who borrows how: lenders with product mixes, borrowers with behaviour profiles.

Everything here is a pure function of a seeded :class:`random.Random`, so a population and its
loan plan are reproducible. A profile describes the *draw* rhythm of a borrower over the
history window; repayments follow most draws, and a ``defaulter``'s last loan ends in a
``default`` event instead.

| profile       | draws                                                     |
| ------------- | --------------------------------------------------------- |
| `monthly`     | one draw every 27-33 days (~1 per 30 days)                |
| `weekly`      | one draw every 6-8 days (~4 per 30 days)                  |
| `ten_a_month` | one draw every 2-4 days (~10 per 30 days)                 |
| `bursty`      | 1-2 bursts of 3-8 draws, each burst within a few hours    |
| `stacker`     | 3-5 lenders, one draw per lender every 10-20 days         |
| `defaulter`   | 1-3 draws early on, then a `default` on the last loan 5-14 days later |
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from schemas import national_id
from schemas.records import ConsentAction, EventType

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: The registry's default ``GRACE_HOURS``: a "late" cancel happens more than this after the
#: event it cancels.
GRACE_HOURS = 72

#: The first lenders, with their products and (weight, median amount in yuan) per product.
LENDER_CATALOGUE: tuple[tuple[str, tuple[tuple[str, float, float], ...]], ...] = (
    ("ant-huabei", (("huabei", 0.85, 180.0), ("huabei-installment", 0.15, 2400.0))),
    ("ant-jiebei", (("jiebei", 1.0, 3000.0),)),
    ("webank-weilidai", (("weilidai", 1.0, 5000.0),)),
    ("jd-baitiao", (("baitiao", 0.8, 250.0), ("baitiao-installment", 0.2, 3000.0))),
    ("jd-jintiao", (("jintiao", 1.0, 4000.0),)),
)
_GENERIC_PRODUCTS = (("cash-loan", 0.6, 2000.0), ("consumer-credit", 0.4, 600.0))


class Profile(StrEnum):
    MONTHLY = "monthly"
    WEEKLY = "weekly"
    TEN_A_MONTH = "ten_a_month"
    BURSTY = "bursty"
    STACKER = "stacker"
    DEFAULTER = "defaulter"


#: Share of each profile in a population (sums to 1).
PROFILE_SHARES: dict[Profile, float] = {
    Profile.MONTHLY: 0.35,
    Profile.WEEKLY: 0.20,
    Profile.TEN_A_MONTH: 0.10,
    Profile.BURSTY: 0.10,
    Profile.STACKER: 0.15,
    Profile.DEFAULTER: 0.10,
}


@dataclass(frozen=True, slots=True)
class Lender:
    lender_id: str
    products: tuple[tuple[str, float, float], ...]  # (product, weight, median yuan)

    def pick_product(self, rng: random.Random) -> tuple[str, float]:
        names = [p[0] for p in self.products]
        weights = [p[1] for p in self.products]
        index = rng.choices(range(len(names)), weights)[0]
        return names[index], self.products[index][2]


def lenders(count: int) -> list[Lender]:
    """The first ``count`` lenders: the catalogue, then ``lender-6``, ``lender-7``, ..."""
    result = [Lender(lid, products) for lid, products in LENDER_CATALOGUE[:count]]
    result += [Lender(f"lender-{n}", _GENERIC_PRODUCTS) for n in range(6, count + 1)]
    return result


@dataclass(frozen=True, slots=True)
class Borrower:
    borrower_id: str
    profile: Profile
    lenders: tuple[str, ...]  # the lenders this borrower uses


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One loan event before it gets an event id: what happens, when, where."""

    occurred_at_ms: int
    lender_id: str
    loan_id: str
    event_type: EventType
    amount_minor: int
    product: str


@dataclass(frozen=True, slots=True)
class PlannedConsent:
    lender_id: str
    action: ConsentAction
    effective_at_ms: int
    reference: str


def borrowers(rng: random.Random, count: int, lender_ids: list[str]) -> list[Borrower]:
    """``count`` borrowers with distinct valid national ids and profiles drawn by share."""
    profiles = list(PROFILE_SHARES)
    weights = list(PROFILE_SHARES.values())
    seen: set[str] = set()
    result: list[Borrower] = []
    while len(result) < count:
        bid = national_id.generate(rng)
        if bid in seen:
            continue
        seen.add(bid)
        profile = rng.choices(profiles, weights)[0]
        if profile is Profile.STACKER:
            used = rng.sample(lender_ids, min(len(lender_ids), rng.randint(3, 5)))
        else:
            used = rng.sample(lender_ids, min(len(lender_ids), 1 if rng.random() < 0.7 else 2))
        result.append(Borrower(bid, profile, tuple(used)))
    return result


def _periodic(
    rng: random.Random, start: int, end: int, low_days: float, high_days: float
) -> list[int]:
    """Times from a random phase in the first period, then gaps uniform in [low, high] days."""
    times: list[int] = []
    t = start + int(rng.uniform(0, high_days) * DAY_MS)
    while t < end:
        times.append(t)
        t += int(rng.uniform(low_days, high_days) * DAY_MS)
    return times


def _bursts(rng: random.Random, start: int, end: int) -> list[int]:
    times: list[int] = []
    for _ in range(rng.randint(1, 2)):
        begin = rng.randrange(start, max(start + 1, end - 8 * HOUR_MS))
        span = rng.randint(1, 6) * HOUR_MS
        times += sorted(begin + rng.randrange(span) for _ in range(rng.randint(3, 8)))
    return sorted(times)


def _amount_minor(rng: random.Random, median_yuan: float) -> int:
    yuan = math.exp(rng.gauss(math.log(median_yuan), 0.6))
    return max(100, min(round(yuan * 100), 50_000_000))


def plan_loans(
    rng: random.Random, borrower: Borrower, catalogue: dict[str, Lender], start_ms: int, end_ms: int
) -> list[PlannedEvent]:
    """The borrower's loan events in ``[start_ms, end_ms)``: draws by profile, then
    repayments (80 % of draws, 5-30 days later) or, for a defaulter, a final default."""
    profile = borrower.profile
    draws: list[tuple[int, str]] = []  # (time, lender)
    if profile is Profile.STACKER:
        for lid in borrower.lenders:
            draws += [(t, lid) for t in _periodic(rng, start_ms, end_ms, 10, 20)]
    else:
        schedule: dict[Profile, Callable[[], list[int]]] = {
            Profile.MONTHLY: lambda: _periodic(rng, start_ms, end_ms, 27, 33),
            Profile.WEEKLY: lambda: _periodic(rng, start_ms, end_ms, 6, 8),
            Profile.TEN_A_MONTH: lambda: _periodic(rng, start_ms, end_ms, 2, 4),
            Profile.BURSTY: lambda: _bursts(rng, start_ms, end_ms),
            Profile.DEFAULTER: lambda: _periodic(
                rng, start_ms, start_ms + (end_ms - start_ms) // 2, 3, 6
            )[:3],
        }
        draws = [(t, rng.choice(borrower.lenders)) for t in schedule[profile]()]
    draws.sort()
    lines: dict[str, str] = {}  # one credit line per lender
    events: list[PlannedEvent] = []
    for index, (t, lid) in enumerate(draws):
        lender = catalogue[lid]
        loan_id = lines.setdefault(lid, f"{lid.split('-')[-1][:4]}-{rng.getrandbits(48):012x}")
        product, median = lender.pick_product(rng)
        amount = _amount_minor(rng, median)
        events.append(PlannedEvent(t, lid, loan_id, EventType.DRAW, amount, product))
        last = index == len(draws) - 1
        if profile is Profile.DEFAULTER and last:
            when = t + int(rng.uniform(5, 14) * DAY_MS)
            if when < end_ms:
                events.append(PlannedEvent(when, lid, loan_id, EventType.DEFAULT, amount, product))
        elif rng.random() < 0.8:
            when = t + int(rng.uniform(5, 30) * DAY_MS)
            repaid = amount if rng.random() < 0.7 else max(100, amount * rng.randint(3, 9) // 10)
            if when < end_ms:
                events.append(
                    PlannedEvent(when, lid, loan_id, EventType.REPAYMENT, repaid, product)
                )
    events.sort(key=lambda e: e.occurred_at_ms)
    return events


def plan_consent(
    rng: random.Random, borrower: Borrower, consent_rate: float, start_ms: int, end_ms: int
) -> list[PlannedConsent]:
    """Consent per (borrower, lender) pair with probability ``consent_rate``.

    Of the consenting pairs 70 % granted before the window starts, 30 % part-way through (their
    earlier events are not admitted); 15 % of the consenting pairs revoke later on.
    """
    result: list[PlannedConsent] = []
    for lid in borrower.lenders:
        if rng.random() >= consent_rate:
            continue
        if rng.random() < 0.7:
            granted = start_ms - rng.randint(1, 365) * DAY_MS + rng.randrange(DAY_MS)
        else:
            granted = rng.randrange(start_ms, end_ms)
        ref = f"consent-{rng.getrandbits(64):016x}"
        result.append(PlannedConsent(lid, ConsentAction.GRANT, granted, ref))
        if rng.random() < 0.15:
            revoked = rng.randrange(max(granted, start_ms) + 1, end_ms + 2)
            result.append(PlannedConsent(lid, ConsentAction.REVOKE, min(revoked, end_ms), ref))
    return result
