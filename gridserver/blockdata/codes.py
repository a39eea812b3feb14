"""Validation of the two national codes block data carries.

* Citizen ID number (GB 11643-1999): 17 digits + a check character. Weights 2^(17-i) mod 11;
  ``check = (12 - sum mod 11) mod 11``, written ``X`` for 10. Digits 7-14 are the birth date, digit
  17 is odd for men and even for women.
* Unified social credit code (GB 32100-2015): 18 characters over the 31-symbol alphabet
  ``0-9 A-H J-N P-R T U W-Y`` (no I, O, Z, S, V); weights 3^(i) mod 31; ``check = 31 - sum mod 31``
  (31 → 0).

Each validator returns the normalised code or raises ValueError with a reason a person can act on.
"""

from __future__ import annotations

from datetime import date

import numpy as np

_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_ID_CHECK = "10X98765432"
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS)) % 11]


def id_check_bytes(digits: np.ndarray) -> np.ndarray:
    """:func:`id_check_char` for many numbers at once: ``digits`` is an (n, 17) integer array of the
    first 17 digits; returns the n check characters as ASCII codes (uint8)."""
    table = np.frombuffer(_ID_CHECK.encode(), dtype=np.uint8)
    return table[(digits.astype(np.int64) @ np.array(_ID_WEIGHTS, dtype=np.int64)) % 11]


def validate_id_number(value: str) -> str:
    """A valid 18-character ID number (upper-case X), else ValueError saying what is wrong."""
    v = (value or "").strip().upper().replace(" ", "")
    if len(v) != 18:
        raise ValueError(f"ID number must have 18 characters, got {len(v)}")
    if not v[:17].isdigit() or not (v[17].isdigit() or v[17] == "X"):
        raise ValueError("ID number must be 17 digits followed by a digit or X")
    try:
        date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        raise ValueError(f"ID number holds no valid birth date ({v[6:14]})") from None
    want = id_check_char(v[:17])
    if v[17] != want:
        raise ValueError(f"ID number check digit is {v[17]}, GB 11643 requires {want}")
    return v


def id_birth_sex(v: str) -> tuple[int, str]:
    """(birth year, 'M'|'F') from a validated ID number."""
    return int(v[6:10]), "M" if int(v[16]) % 2 else "F"


def credit_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters."""
    s = sum(CREDIT_ALPHABET.index(c) * w for c, w in zip(first17, _CREDIT_WEIGHTS))
    return CREDIT_ALPHABET[(31 - s % 31) % 31]


def credit_check_index(values: np.ndarray) -> np.ndarray:
    """:func:`credit_check_char` for many codes at once: ``values`` is an (n, 17) array of the first 17
    characters' positions in ``CREDIT_ALPHABET``; returns the check characters' positions."""
    s = values.astype(np.int64) @ np.array(_CREDIT_WEIGHTS, dtype=np.int64)
    return (31 - s % 31) % 31


def validate_credit_code(value: str) -> str:
    """A valid 18-character unified social credit code, else ValueError saying what is wrong."""
    v = (value or "").strip().upper().replace(" ", "")
    if len(v) != 18:
        raise ValueError(f"credit code must have 18 characters, got {len(v)}")
    bad = [c for c in v if c not in CREDIT_ALPHABET]
    if bad:
        raise ValueError(f"credit code contains {bad[0]!r}, not allowed by GB 32100 (no I, O, Z, S, V)")
    if not v[2:8].isdigit():
        raise ValueError("credit code characters 3-8 must be the 6-digit area code")
    want = credit_check_char(v[:17])
    if v[17] != want:
        raise ValueError(f"credit code check character is {v[17]}, GB 32100 requires {want}")
    return v


def validate_phone(value: str) -> str:
    """A mainland mobile (11 digits, 1xx) or a fixed line (digits and one dash, 7-12 digits)."""
    v = (value or "").strip().replace(" ", "").replace("+86", "")
    digits = v.replace("-", "")
    if not digits.isdigit() or v.count("-") > 1:
        raise ValueError(f"phone number {value!r} must be digits (one '-' allowed)")
    if len(digits) == 11 and digits.startswith("1"):
        return digits
    if 7 <= len(digits) <= 12 and not digits.startswith("1"):
        return digits
    raise ValueError(f"phone number {value!r} is neither an 11-digit mobile nor a 7-12 digit fixed line")


def make_id_number(area6: str, birth: date, seq3: int, sex: str) -> str:
    """A format-valid (fictitious) ID number; seq3's last digit is forced odd for M, even for F."""
    s = seq3 % 1000
    if (s % 2 == 1) != (sex == "M"):
        s = s - 1 if s % 2 else s + 1
        s %= 1000
        if (s % 2 == 1) != (sex == "M"):
            s = (s + 1) % 1000
    first = f"{area6}{birth:%Y%m%d}{s:03d}"
    return first + id_check_char(first)


def make_credit_code(dept: str, kind: str, area6: str, org9: str) -> str:
    """A format-valid (fictitious) credit code: register dept (1), kind (1), area (6), org code (9)."""
    first = f"{dept}{kind}{area6}{org9}"
    return first + credit_check_char(first)
