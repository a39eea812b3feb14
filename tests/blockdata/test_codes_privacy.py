"""ID number (GB 11643) and credit code (GB 32100) validation; masking; HMAC keyed outside the DB."""

from datetime import date

import pytest

from gridserver.blockdata import privacy
from gridserver.blockdata.codes import (make_credit_code, make_id_number, validate_credit_code, validate_id_number,
                                        validate_phone)


@pytest.mark.parametrize("good", ["11010519491231002X", "440524188001010014"])
def test_published_id_numbers_validate(good):
    assert validate_id_number(good.lower()) == good


@pytest.mark.parametrize("bad,why", [("11010519491231002", "18 characters"), ("110105194912310021", "GB 11643 requires X"),
                                     ("11010519491331002X", "birth date"), ("1101051949123100AX", "17 digits")])
def test_bad_id_numbers_say_why(bad, why):
    with pytest.raises(ValueError, match=why):
        validate_id_number(bad)


def test_published_credit_code_validates_and_altered_one_fails():
    assert validate_credit_code("91350100M000100Y43") == "91350100M000100Y43"
    with pytest.raises(ValueError, match="GB 32100 requires 3"):
        validate_credit_code("91350100M000100Y40")
    with pytest.raises(ValueError, match="not allowed"):
        validate_credit_code("91350100M000100I43")


def test_generated_codes_are_valid_and_carry_sex():
    for n in range(200):
        sex = "MF"[n % 2]
        v = validate_id_number(make_id_number("440104", date(1950 + n % 60, 1 + n % 12, 1 + n % 28), n * 7, sex))
        assert int(v[16]) % 2 == (sex == "M")
        validate_credit_code(make_credit_code("9", "1", "440104", f"MA5{n:06d}"))


def test_phone_validation():
    assert validate_phone("138 1234 5678") == "13812345678"
    assert validate_phone("020-83001234") == "02083001234"
    with pytest.raises(ValueError):
        validate_phone("123")


def test_masks():
    assert privacy.mask_name("张三明") == "张*明"
    assert privacy.mask_name("李四") == "李*"
    assert privacy.mask_name("欧阳建国") == "欧**国"
    assert privacy.mask_id("44010419850307123x") == "4401**********123X"
    assert privacy.mask_phone("13812345678") == "138****5678"
    assert privacy.generalise_address("440104R00012H0007B003U02S0012") == "440104R00012H0007B003"
    assert privacy.generalise_address("440104R00012H0007S0012") == "440104R00012H0007"


def test_hmac_key_lives_outside_the_database(tmp_path, monkeypatch):
    from gridserver.settings import get_settings

    monkeypatch.delenv("GRIDSERVER_PII_KEY", raising=False)
    k1 = privacy._key_for(str(tmp_path / "a"), None)
    assert (tmp_path / "a" / "pii-key").stat().st_mode & 0o777 == 0o600
    assert privacy._key_for(str(tmp_path / "a"), None) == k1
    k2 = privacy._key_for(str(tmp_path / "b"), None)
    h = "11010519491231002X"
    assert privacy.pii_hash(h, k1) != privacy.pii_hash(h, k2)
    assert privacy.pii_hash(h, k1) == privacy.pii_hash(h.lower(), k1)
    assert privacy._key_for(str(tmp_path / "c"), "env-key") == b"env-key"
    assert get_settings() is not None


class _U:
    def __init__(self, role, scope=None):
        self.role, self.scope_code = role, scope


@pytest.mark.parametrize("role,scope,area,view", [
    ("grid_worker", "440104001001001", "440104001001001", "full"),
    ("grid_worker", "440104001001001", "440104001001002", "none"),
    ("grid_worker", "440104001001001", "440104001001", "none"),
    ("community_operator", "440104001001", "440104001001002", "full"),
    ("street_operator", "440104001", "440104003001001", "none"),
    ("dept_handler", "440104", "440104001001001", "masked"),
    ("analyst", None, "440104001001001", "deidentified"),
    ("admin", None, "440104", "full"),
    ("citizen", None, "440104001001001", "none"),
])
def test_view_for_each_role_both_ways(role, scope, area, view):
    assert privacy.view_for(_U(role, scope), area) == view
