"""The standard address base: codes, levels, history, retire/rename, aliases — on real PostGIS."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from address_data import address_base  # noqa: F401  (fixture)
from gridserver.address import base as svc
from gridserver.address.base import NewAddress
from gridserver.errors import Conflict, InvalidInput

CODE = re.compile(r"^\d{6}R\d{5}(H\d{4}(B\d{3})?(U\d{2})?(F\d{3})?(S\d{4})?)?$")


def test_every_loaded_address_has_a_hierarchical_code_a_grid_and_history(engine, address_base):
    with engine.connect() as conn:
        rows = conn.execute(text(
            """SELECT s.code, s.level, p.code AS parent_code, s.grid_code, s.community_code, s.district_code,
                      (SELECT count(*) FROM address_history h WHERE h.address_id = s.id) AS n_hist
               FROM std_addresses s LEFT JOIN std_addresses p ON p.id = s.parent_id
               WHERE s.source = '测试标准地址库'""")).all()
    assert len(rows) == len(address_base["base"].addresses)
    for r in rows:
        assert CODE.match(r.code), r.code
        if r.level == "road":
            assert r.parent_code is None and r.code.startswith("440104R")
        else:
            assert r.code.startswith(r.parent_code) and len(r.code) > len(r.parent_code)
        assert r.n_hist >= 1
        if r.level != "road":  # roads sit at their midpoint, which may be just outside the box
            assert r.grid_code and r.grid_code.startswith(r.community_code) and r.district_code == "440104"


def test_codes_are_never_reused_after_retirement(engine, address_base):
    with engine.begin() as conn:
        svc.set_actor(conn, "tester", "create", "code reuse test")
        ids = svc.bulk_create(conn, [NewAddress("测试编码路", "1", lon=113.27, lat=23.13)], source="test",
                              default_district="440104")
        house = svc.get_by_id(conn, ids["测试编码路|1||||"])
        svc.retire_address(conn, house["code"], actor="tester", reason="demolished")
        again = svc.bulk_create(conn, [NewAddress("测试编码路", "1", lon=113.27, lat=23.13)], source="test")
        new_house = svc.get_by_id(conn, again["测试编码路|1||||"])
    assert new_house["id"] != house["id"]
    assert new_house["code"] != house["code"]
    assert new_house["code"][:-4] == house["code"][:-4]  # same road prefix, next serial
    assert int(new_house["code"][-4:]) == int(house["code"][-4:]) + 1


def test_bulk_create_twice_creates_nothing_the_second_time(engine, address_base):
    batch = [NewAddress("测试幂等路", "8", "2", "1", "", "301", lon=113.271, lat=23.131)]
    with engine.begin() as conn:
        first = svc.bulk_create(conn, batch, source="test", default_district="440104")
        n = conn.execute(text("SELECT count(*) FROM std_addresses")).scalar()
        second = svc.bulk_create(conn, batch, source="test", default_district="440104")
        assert conn.execute(text("SELECT count(*) FROM std_addresses")).scalar() == n
    assert first == second
    assert set(first) == {"测试幂等路|||||", "测试幂等路|8||||", "测试幂等路|8|2|||", "测试幂等路|8|2|1||",
                          "测试幂等路|8|2|1||301"}


def test_standard_text_and_levels(engine, address_base):
    with engine.begin() as conn:
        ids = svc.bulk_create(conn, [NewAddress("测试文本路", "13", "3", "2", "", "501", lon=113.266, lat=23.128)],
                              source="test", default_district="440104")
        room = svc.get_by_id(conn, ids["测试文本路|13|3|2||501"])
    assert room["level"] == "room"
    assert room["full_text"] == "广东省广州市越秀区测试文本路13号3栋2单元501室"
    assert room["grid_code"].startswith("440104001")  # the west street of the small city


def test_retire_keeps_the_address_and_records_who_when_why(engine, address_base):
    with engine.begin() as conn:
        ids = svc.bulk_create(conn, [NewAddress("测试拆迁路", "5", "1", lon=113.268, lat=23.13)], source="test",
                              default_district="440104")
        house = svc.get_by_id(conn, ids["测试拆迁路|5||||"])
        svc.retire_address(conn, house["code"], actor="张科长", reason="旧城改造拆除")
        full = svc.get_address(conn, house["code"])
        building = svc.get_by_id(conn, ids["测试拆迁路|5|1|||"])
    assert full["status"] == "retired" and full["retired_at"]
    assert building["status"] == "retired"  # descendants go with it
    last = full["history"][-1]
    assert (last["actor"], last["action"], last["reason"]) == ("张科长", "retire", "旧城改造拆除")
    assert last["before"]["status"] == "active" and last["after"]["status"] == "retired"
    with engine.begin() as conn, pytest.raises(Conflict):
        svc.retire_address(conn, house["code"], actor="x", reason="again")


def test_addresses_cannot_be_deleted(engine, address_base):
    with engine.connect() as conn:
        code = conn.execute(text("SELECT code FROM std_addresses LIMIT 1")).scalar()
        with pytest.raises(DBAPIError, match="never deleted"):
            conn.execute(text("DELETE FROM std_addresses WHERE code = :c"), {"c": code})
        conn.rollback()


def test_rename_a_road_renames_descendants_keeps_code_and_old_name_as_alias(engine, address_base):
    with engine.begin() as conn:
        ids = svc.bulk_create(conn, [NewAddress("测试旧名路", "7", "2", "", "", "101", lon=113.27, lat=23.129)],
                              source="test", default_district="440104")
        road = svc.get_by_id(conn, ids["测试旧名路|||||"])
        svc.update_address(conn, road["code"], actor="民政局", reason="道路更名", name="测试新名路")
        renamed = svc.get_address(conn, road["code"])
        room = svc.get_by_id(conn, ids["测试旧名路|7|2|||101"])
    assert renamed["code"] == road["code"] and renamed["road"] == "测试新名路"
    assert "测试旧名路" in [a["text"] for a in renamed["aliases"]]
    assert room["match_key"] == "测试新名路|7|2|||101" and room["full_text"].endswith("测试新名路7号2栋101室")
    assert any(h["action"] == "update" and h["reason"] == "道路更名" for h in renamed["history"])


def test_move_refreshes_grid_and_needs_a_reason(engine, address_base):
    with engine.begin() as conn:
        ids = svc.bulk_create(conn, [NewAddress("测试搬迁路", "3", lon=113.255, lat=23.145)], source="test",
                              default_district="440104")
        code = svc.get_by_id(conn, ids["测试搬迁路|3||||"])["code"]
        with pytest.raises(InvalidInput):
            svc.update_address(conn, code, actor="x", reason="", lon=113.285, lat=23.125)
        moved = svc.update_address(conn, code, actor="测绘", reason="实测坐标", lon=113.285, lat=23.125)
    assert moved["grid_code"].startswith("440104003002")  # south-east community
    assert moved["code"] == code
