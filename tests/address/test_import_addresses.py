"""`gridserver import addresses`: bad files fail cleanly and import nothing; re-imports change nothing."""

from __future__ import annotations

import csv
import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from address_data import SEED, address_base  # noqa: F401  (fixture)
from gridserver.address.demo_data import write_department_table
from gridserver.address.importer import import_file
from gridserver.errors import InvalidInput


def _counts(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT (SELECT count(*) FROM dept_records), (SELECT count(*) FROM std_addresses), "
                                 "(SELECT count(*) FROM address_imports WHERE status = 'done')")).one()


def _some_rooms(engine, n=5):
    with engine.connect() as conn:
        return conn.execute(text("SELECT full_text, match_key FROM std_addresses WHERE level = 'room' "
                                 "AND source = '测试标准地址库' ORDER BY code LIMIT :n"), {"n": n}).all()


def _write_csv(path, header, rows, encoding="utf-8"):
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.parametrize("case", ["empty", "header_only", "missing_column", "bad_mapping", "wrong_encoding",
                                  "garbage_xlsx", "lon_without_lat"])
def test_bad_files_get_clear_errors_and_import_nothing(engine, address_base, tmp_path, case):
    before = _counts(engine)
    p = tmp_path / "t.csv"
    mapping = None
    if case == "empty":
        p.write_bytes(b"")
        expect = "empty"
    elif case == "header_only":
        _write_csv(p, ["编号", "地址"], [])
        expect = "no data rows"
    elif case == "missing_column":
        _write_csv(p, ["编号", "姓名"], [["1", "张三"]])
        expect = "missing the address column"
    elif case == "bad_mapping":
        _write_csv(p, ["编号", "住址"], [["1", "中山四路1号"]])
        mapping = "address=详细住址"
        expect = "column '详细住址' (for address) not found"
    elif case == "wrong_encoding":
        # UTF-16 is neither UTF-8 nor GB18030: say so and where, rather than import mojibake.
        p.write_bytes("编号,地址\n1,越秀区中山四路13号\n".encode("utf-16"))
        expect = "cannot read the text encoding"
    elif case == "garbage_xlsx":
        p = tmp_path / "t.xlsx"
        p.write_bytes(b"this is not a zip file at all" * 10)
        expect = "not a readable .xlsx workbook"
    else:
        _write_csv(p, ["地址", "经度"], [["中山四路1号", "113.27"]])
        expect = "both a longitude and a latitude"
    with pytest.raises(InvalidInput) as err:
        import_file(engine, p, source="坏文件测试", mapping=mapping)
    assert expect in err.value.detail
    assert p.name in err.value.detail or case == "bad_mapping" or "t." in err.value.detail
    assert _counts(engine) == before


def test_gb18030_csv_with_column_mapping_and_idempotent_reimport(engine, address_base, tmp_path):
    rooms = _some_rooms(engine)
    rows = [[f"X{i}", r.full_text.replace("广东省广州市越秀区", ""), "备注"] for i, r in enumerate(rooms)]
    rows.append(["X99", "不详", ""])
    p = _write_csv(tmp_path / "户籍.csv", ["记录号", "现住址", "备注"], rows, encoding="gb18030")
    rej = tmp_path / "rejected.csv"
    s = import_file(engine, p, source="幂等测试", mapping="address=现住址,id=记录号", rejected=rej)
    assert s.encoding == "gb18030"
    assert (s.rows, s.matched, s.rejected) == (len(rows), len(rooms), 1)
    with open(rej, encoding="utf-8-sig") as f:
        bad = list(csv.reader(f))
    assert bad[1][1:] == ["X99", "不详", "unparseable: no road and no house number found"]
    before = _counts(engine)
    again = import_file(engine, p, source="幂等测试", mapping="address=现住址,id=记录号", rejected=rej)
    assert again.already_imported and again.matched == 0
    assert _counts(engine) == before
    # The same rows in another file (re-saved, extra blank line) change nothing either.
    p2 = tmp_path / "户籍2.csv"
    p2.write_bytes(p.read_bytes() + "\r\n".encode("gb18030"))
    third = import_file(engine, p2, source="幂等测试", mapping="address=现住址,id=记录号", rejected=rej)
    assert (third.unchanged, third.matched, third.new, third.review) == (len(rows), 0, 0, 0)
    assert _counts(engine)[:2] == before[:2]


def test_xlsx_with_split_address_columns(engine, address_base, tmp_path):
    import openpyxl

    with engine.connect() as conn:
        r = conn.execute(text("SELECT road, house_no, building, unit, room, match_key, id FROM std_addresses "
                              "WHERE level = 'room' AND unit <> '' ORDER BY code LIMIT 1")).first()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["街路巷", "门牌号", "楼栋", "单元", "房号"])
    ws.append([r.road, f"{r.house_no}号", f"{r.building}栋", f"{r.unit}单元", int(r.room)])
    p = tmp_path / "住建.xlsx"
    wb.save(p)
    s = import_file(engine, p, source="拆分列测试", mapping="address=街路巷+门牌号+楼栋+单元+房号")
    assert (s.rows, s.matched) == (1, 1)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT address_id FROM dept_records WHERE source = '拆分列测试'")).scalar()
    assert got == r.id


def test_gcj02_points_are_converted_and_outside_points_rejected(engine, address_base, tmp_path):
    from gridserver.geo.crs import wgs84_to_gcj02

    with engine.connect() as conn:
        b = conn.execute(text("SELECT road, house_no, building, ST_X(geom) x, ST_Y(geom) y FROM std_addresses "
                              "WHERE level = 'building' ORDER BY code LIMIT 1")).first()
    gx, gy = wgs84_to_gcj02(b.x, b.y)
    rows = [["1", f"{b.road}{b.house_no}号{b.building}栋", f"{float(gx):.7f}", f"{float(gy):.7f}"],
            ["2", f"{b.road}{b.house_no}号", "121.47", "31.23"],            # Shanghai
            ["3", f"{b.road}{b.house_no}号", "abc", "23.1"]]
    p = _write_csv(tmp_path / "市监.csv", ["编号", "经营场所", "经度", "纬度"], rows)
    s = import_file(engine, p, source="坐标测试", crs="gcj02", rejected=tmp_path / "rej.csv")
    assert (s.matched, s.rejected) == (1, 2)
    with engine.connect() as conn:
        rec = conn.execute(text("SELECT ST_X(geom) x, ST_Y(geom) y, status, reason, source_key FROM dept_records "
                                "WHERE source = '坐标测试' ORDER BY row_no")).all()
    assert abs(rec[0].x - b.x) < 1e-6 and abs(rec[0].y - b.y) < 1e-6  # stored in WGS84
    assert "outside the district" in rec[1].reason and rec[2].reason.startswith("bad coordinates")


def test_cli_import_prints_a_summary_and_json(engine, address_base, tmp_path):
    from gridserver.address.cli import import_addresses
    import typer

    app = typer.Typer()
    app.command()(import_addresses)
    path, truth, mapping = write_department_table(address_base["base"], "市场监管", tmp_path, 200, SEED + 1)
    res = CliRunner().invoke(app, [str(path), "--source", "CLI测试", "--map", mapping, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["rows"] == 200 and out["matched"] + out["new"] + out["review"] + out["rejected"] == 200
    assert out["rows_per_second"] > 0
    res = CliRunner().invoke(app, [str(path), "--source", "CLI测试", "--map", mapping])
    assert res.exit_code == 0 and "already imported" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    res = CliRunner().invoke(app, [str(bad), "--source", "CLI测试"])
    assert res.exit_code == 2 and "missing the address column" in res.output
