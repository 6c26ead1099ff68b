"""Event-time bucket boundaries: UTC hours and local days of the registry's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

HOUR_MS = 3_600_000
_SLOT_MS = 900_000  # every UTC offset in use is a multiple of 15 minutes
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class Calendar:
    """Answers "which local day is this instant in" fast, with a per-15-minute cache."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._day_of_slot: dict[int, int] = {}
        self._day_start: dict[int, int] = {}

    def day_of(self, ms: int) -> int:
        """Local day of ``ms`` as days since 1970-01-01."""
        slot = ms // _SLOT_MS
        day = self._day_of_slot.get(slot)
        if day is None:
            local = datetime.fromtimestamp(slot * _SLOT_MS / 1000, self.tz)
            day = local.date().toordinal() - _EPOCH_ORDINAL
            if len(self._day_of_slot) > 200_000:
                self._day_of_slot.clear()
            self._day_of_slot[slot] = day
        return day

    def day_start_ms(self, day: int) -> int:
        """UTC epoch ms of local midnight starting ``day``."""
        start = self._day_start.get(day)
        if start is None:
            local_midnight = datetime.combine(
                date.fromordinal(day + _EPOCH_ORDINAL), datetime.min.time(), self.tz
            )
            start = int(local_midnight.timestamp() * 1000)
            self._day_start[day] = start
        return start

    def day_end_ms(self, day: int) -> int:
        return self.day_start_ms(day + 1)


def hour_of(ms: int) -> int:
    """Start of the UTC hour containing ``ms``, epoch ms."""
    return ms - ms % HOUR_MS


def day_to_date(day: int) -> date:
    return date.fromordinal(day + _EPOCH_ORDINAL)




def local_today(tz: ZoneInfo, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(tz).date()


__all__ = ["HOUR_MS", "Calendar", "day_to_date", "hour_of", "local_today"]
