"""The resident-id rules, checked against an independent, literal reading of the standard."""

from __future__ import annotations

import random

import pytest

from schemas import national_id

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
MAP = ("1", "0", "X", "9", "8", "7", "6", "5", "4", "3", "2")


def oracle_check_character(first17: str) -> str:
    """ISO 7064 MOD 11-2 exactly as GB 11643 writes it (no base-13 trick)."""
    return MAP[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def test_check_character_on_the_standards_examples() -> None:
    # 1 1 0 1 0 5 1 9 4 9 1 2 3 1 0 0 2 x weights = 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4
    # = 167; 167 mod 11 = 2 -> "X".
    assert national_id.check_character("11010519491231002") == "X"
    # 4 4 0 5 2 4 1 8 8 0 0 1 0 1 0 0 1 x weights = 28+36+0+25+16+16+2+8+48+0+0+9+0+5+0+0+2
    # = 195; 195 mod 11 = 8 -> "4".
    assert national_id.check_character("44052418800101001") == "4"
    # 1 1 0 1 0 1 1 9 9 0 0 3 0 7 4 5 1 x weights = 7+9+0+5+0+4+2+9+54+0+0+27+0+35+32+20+2
    # = 206; 206 mod 11 = 8 -> "4".
    assert national_id.check_character("11010119900307451") == "4"


def test_fast_check_character_agrees_with_the_literal_definition() -> None:
    rng = random.Random(20261122)
    for _ in range(5000):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        assert national_id.check_character(first17) == oracle_check_character(first17)


@pytest.mark.parametrize("bad", ["1101051949123100", "110105194912310021", "1101051949123100a", ""])
def test_check_character_refuses_non_17_digit_input(bad: str) -> None:
    with pytest.raises(ValueError):
        national_id.check_character(bad)


@pytest.mark.parametrize(
    "id_number",
    ["11010519491231002X", "11010519491231002x", "110101199003074514", "440305200512310018"],
)
def test_valid_ids(id_number: str) -> None:
    assert national_id.is_valid(id_number)


@pytest.mark.parametrize(
    ("id_number", "why"),
    [
        ("110105194912310021", "wrong check character"),
        ("110101199003074515", "wrong check character"),
        ("440524188001010014", "correct check character but born before 1900"),
        ("11010519491231002", "17 characters"),
        ("11010519491231002XX", "19 characters"),
        ("11010519A91231002X", "a letter among the digits"),
        ("990105194912310020", "99 is no province code"),
        ("110101199002300000", "30 February"),
        ("110101199013010000", "month 13"),
        ("110105１９491231002X", "full-width digits"),
    ],
)
def test_invalid_ids(id_number: str, why: str) -> None:
    # Keep the check character right where the point is a different rule.
    if why in ("99 is no province code", "30 February", "month 13"):
        id_number = id_number[:17] + oracle_check_character(id_number[:17])
    assert not national_id.is_valid(id_number), why


def test_birth_date_in_the_future_is_invalid() -> None:
    first17 = "11010129990101001"
    assert not national_id.is_valid(first17 + oracle_check_character(first17))


def test_normalise_upper_cases_x_and_refuses_without_echoing() -> None:
    assert national_id.normalise("11010519491231002x") == "11010519491231002X"
    assert national_id.normalise("110101199003074514") == "110101199003074514"
    with pytest.raises(ValueError) as info:
        national_id.normalise("110105194912310021")
    assert "110105194912310021" not in str(info.value)


def test_generate_is_valid_deterministic_and_varied() -> None:
    ids = [national_id.generate(random.Random(7)) for _ in range(3)]
    assert len(set(ids)) == 1  # same seed, same id
    rng = random.Random(42)
    many = [national_id.generate(rng) for _ in range(2000)]
    assert all(national_id.is_valid(i) for i in many)
    assert all(oracle_check_character(i[:17]) == i[17] for i in many)
    assert all(1950 <= int(i[6:10]) <= 2005 for i in many)
    assert all(i[:6] in national_id.SIMULATOR_REGIONS for i in many)
    assert len(set(many)) > 1990


# --- the one normalisation rule (issue 13, input 8) ------------------------------------------

GOOD = "11010519491231002X"


@pytest.mark.parametrize(
    "text",
    [GOOD, GOOD.lower(), f"  {GOOD}  ", f"\t{GOOD}\r\n", f"\u3000{GOOD}\u3000", f"\u00a0{GOOD}",
     f"\ufeff{GOOD}", f"{GOOD}\u200b", f" \ufeff {GOOD.lower()} "],
)
def test_normalise_strips_surrounding_whitespace_and_upper_cases_x(text: str) -> None:
    assert national_id.normalise(text) == GOOD


@pytest.mark.parametrize(
    "text",
    ["110105 19491231002X", "110105-19491231002X", "１１０１０５１９４９１２３１００２Ｘ",
     "11010519491231002\ud800", "", "   ", GOOD[:-1] + "0", GOOD + "0"],
)
def test_normalise_refuses_inner_characters_and_never_echoes(text: str) -> None:
    with pytest.raises(national_id.InvalidNationalId) as info:
        national_id.normalise(text)
    assert isinstance(info.value, ValueError)
    assert "1101" not in str(info.value) and "１" not in str(info.value)
