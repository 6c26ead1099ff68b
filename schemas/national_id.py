"""The PRC 18-character resident identity number (GB 11643-1999).

Layout: 6-digit administrative region code, 8-digit birth date ``YYYYMMDD``, 3-digit sequence
(odd for men, even for women) and one check character computed with ISO 7064 MOD 11-2 over the
first 17 digits: weights ``7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2`` and the remainder of the
weighted sum mod 11 maps to ``1 0 X 9 8 7 6 5 4 3 2``.

What :func:`is_valid` promises: 17 ASCII digits plus a digit or ``X``/``x``; a region code
whose first two digits are a provincial-level code (11..82); a real calendar date from
1900-01-01 up to today in China (UTC+8); and the right check character. It does not prove that
the person exists.

Speed matters because every loan event is checked on the worker's hot path. The weights are
``2**(17-i) mod 11``; since ``13 ≡ 2 (mod 11)``, the weighted sum equals
``2 * int(first17, 13) (mod 11)``, which the C ``int()`` parser computes in ~0.1 µs instead of a
17-step Python loop. ``tests/unit/schemas/test_national_id.py`` cross-checks it against the explicit
weights.
"""

from __future__ import annotations

import random
import time
from datetime import date, timedelta
from functools import lru_cache

from schemas.errors import InvalidNationalId

#: Remainder of the weighted sum mod 11 -> check character (ISO 7064 MOD 11-2).
_CHECK_MAP = "10X98765432"

#: First two digits of every provincial-level division (and HK/MO/TW residence permits 81..83).
_PROVINCES = """11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46
                 50 51 52 53 54 61 62 63 64 65 71 81 82 83"""
PROVINCE_CODES = frozenset(_PROVINCES.split())

#: Real county-level region codes used by :func:`generate` (Beijing Dongcheng, Shanghai
#: Xuhui, Shenzhen Nanshan, Hangzhou Xihu, Chengdu Wuhou, Wuhan Wuchang, ...).
SIMULATOR_REGIONS = (
    "110101", "110105", "120101", "130102", "210102", "220102", "310104", "310115",
    "320102", "330106", "340104", "350203", "370202", "410105", "420106", "430104",
    "440106", "440305", "450103", "500103", "510107", "530102", "610113", "620102",
)  # fmt: skip

_EARLIEST_BIRTH = 19000101
_GEN_FIRST = date(1950, 1, 1).toordinal()
_GEN_LAST = date(2005, 12, 31).toordinal()
_CHINA_OFFSET_S = 8 * 3600


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits (``0-9`` or ``X``).

    Raises ``ValueError`` unless ``first17`` is exactly 17 ASCII digits.
    """
    if len(first17) != 17 or not (first17.isascii() and first17.isdigit()):
        raise ValueError("the first 17 characters of a national id must be ASCII digits")
    return _CHECK_MAP[(2 * int(first17, 13)) % 11]


@lru_cache(maxsize=65536)
def _birth_yyyymmdd(text: str) -> int:
    """``YYYYMMDD`` as an int when it is a real date on or after 1900-01-01, else 0."""
    try:
        date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return 0
    value = int(text)
    return value if value >= _EARLIEST_BIRTH else 0


_today_cache: list[float | int] = [0.0, 0]


def _today_in_china() -> int:
    """Today's date in China as ``YYYYMMDD``, recomputed at most once a minute."""
    now = time.time()
    if now >= _today_cache[0]:
        day = date(1970, 1, 1) + timedelta(seconds=now + _CHINA_OFFSET_S)
        _today_cache[1] = day.year * 10000 + day.month * 100 + day.day
        _today_cache[0] = now + 60.0
    return int(_today_cache[1])


def is_valid(id_number: str) -> bool:
    """True when ``id_number`` is a well-formed resident id (``x`` accepted for ``X``)."""
    if len(id_number) != 18:
        return False
    first17 = id_number[:17]
    if not (first17.isascii() and first17.isdigit()) or first17[:2] not in PROVINCE_CODES:
        return False
    birth = _birth_yyyymmdd(first17[6:14])
    # The cached "today" only grows, so a birth date not after it needs no clock read.
    if not birth or (birth > _today_cache[1] and birth > _today_in_china()):
        return False
    last = id_number[17]
    return _CHECK_MAP[(2 * int(first17, 13)) % 11] == (last if last != "x" else "X")


#: Characters :func:`normalise` removes at both ends of an id, besides ``str.isspace()``
#: whitespace (which covers ASCII blanks, tabs, line ends, NBSP and the ideographic space
#: U+3000): the zero-width space and the byte-order mark, which copy-paste leaves behind.
_INVISIBLE = "\u200b\ufeff"


def normalise(id_number: str) -> str:
    """THE normalisation rule for national ids, used by every entry point.

    1. remove surrounding whitespace (any ``str.isspace()`` character, e.g. space, tab,
       CR/LF, NBSP, U+3000) and zero-width characters (U+200B, U+FEFF) at both ends;
    2. upper-case a trailing check character ``x`` to ``X``.

    Nothing else is changed: inner spaces or hyphens, full-width digits (U+FF10..U+FF19) and
    any other non-ASCII character make the id invalid rather than being guessed at.
    Returns the 18-character canonical form. Raises :class:`InvalidNationalId` (a
    ``ValueError``) when the result is not valid per :func:`is_valid`; the message never
    repeats the value.
    """
    if len(id_number) != 18 or not is_valid(id_number):
        id_number = id_number.strip().strip(_INVISIBLE).strip()
        if not is_valid(id_number):
            raise InvalidNationalId("not a valid 18-character PRC resident identity number")
    return id_number if id_number[17] != "x" else id_number[:17] + "X"


def generate(rng: random.Random) -> str:
    """A valid id for the simulator: a real region code, born 1950..2005, random sequence.

    Deterministic for a seeded ``rng``.
    """
    region = rng.choice(SIMULATOR_REGIONS)
    born = date.fromordinal(rng.randint(_GEN_FIRST, _GEN_LAST))
    first17 = f"{region}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + check_character(first17)
