"""A scratch district (440177) with grids, standard addresses and departmental block-data files.

Layout (WGS84): district box 113.40–113.44 E × 23.20–23.23 N, one street 440177001, two communities
(north 001: y ≥ 23.215, south 002), each split west/east at x = 113.42 into grids 001 (west) and 002
(east). Addresses: 测绘路1号1栋 (NW grid), 测绘路2号1栋 (NE grid), 网格街5号 (SW grid, no building).
"""

from __future__ import annotations

import csv
from datetime import date

from shapely.geometry import box

from gridserver.blockdata.codes import make_credit_code, make_id_number

D = "440177"
X0, Y0, X1, Y1 = 113.40, 23.20, 113.44, 23.23
XM, YM = 113.42, 23.215
NW, NE, SW, SE = (f"{D}001001001", f"{D}001001002", f"{D}001002001", f"{D}001002002")


def areas(xm: float = XM) -> list[dict]:
    out = [dict(level="district", code=D, name="测试区", parent_code=None, geom=box(X0, Y0, X1, Y1)),
           dict(level="street", code=f"{D}001", name="测试街道", parent_code=D, geom=box(X0, Y0, X1, Y1))]
    for c, (cy0, cy1) in (("001", (YM, Y1)), ("002", (Y0, YM))):
        cc = f"{D}001{c}"
        out.append(dict(level="community", code=cc, name=f"测试{c}社区", parent_code=f"{D}001", geom=box(X0, cy0, X1, cy1)))
        out.append(dict(level="grid", code=cc + "001", name=f"测试{c}社区第001网格", parent_code=cc, geom=box(X0, cy0, xm, cy1)))
        out.append(dict(level="grid", code=cc + "002", name=f"测试{c}社区第002网格", parent_code=cc, geom=box(xm, cy0, X1, cy1)))
    return out


def addresses():
    from gridserver.address.base import NewAddress

    A = dict(district_code=D, geom_source="survey")
    return [
        NewAddress("测绘路", "1", "1", "", "", "101", lon=113.410, lat=23.222, **A),
        NewAddress("测绘路", "1", "1", "", "", "102", lon=113.410, lat=23.222, **A),
        NewAddress("测绘路", "2", "1", "", "", "201", lon=113.4195, lat=23.222, **A),
        NewAddress("网格街", "5", "", "", "", "301", lon=113.410, lat=23.205, **A),
    ]


def rect(x0, y0, x1, y1) -> str:
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def pid(n: int, sex: str = "M", year: int = 1980) -> str:
    return make_id_number("440104", date(year, 1 + n % 12, 1 + n % 28), 100 + n, sex)


def bad_check(idn: str) -> str:
    return idn[:17] + ("0" if idn[17] != "0" else "1")


def write_csv(path, header, rows, encoding="utf-8"):
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_files(tmp):
    """The four departmental files; returns {kind: path} and the expected facts."""
    files = {}
    files["buildings"] = write_csv(tmp / "buildings.csv", ["地址", "层数", "用途", "建成年份", "轮廓"], [
        ["测绘路1号1栋", "6", "住宅", "1995", rect(113.4095, 23.2215, 113.4105, 23.2225)],         # inside NW
        # straddles x = 113.42: 30 % west (NW), 70 % east (NE) → NE
        ["测绘路2号1栋", "12", "商住", "2008", rect(113.4197, 23.2215, 113.4207, 23.2225)],
        ["测绘路1号1栋", "abc", "住宅", "1995", rect(113.4095, 23.2215, 113.4105, 23.2225)],       # row 4: bad floors
        ["不存在路99号", "3", "住宅", "2000", rect(113.43, 23.21, 113.431, 23.211)],              # row 5: unlinkable
        ["网格街5号", "2", "住宅", "1980", rect(113.4095, 23.2045, 113.4105, 23.2055)],          # SW, no building level
    ])
    files["households"] = write_csv(tmp / "households.csv", ["户号", "地址", "户类型", "户人数"], [
        ["H001", "测绘路1号1栋101室", "家庭户", "3"],
        ["H002", "测绘路1号1栋102室", "家庭户", "1"],
        ["H003", "测绘路2号1栋201室", "家庭户", "2"],
        ["H004", "网格街5号301室", "集体户", "1"],
    ], encoding="gb18030")
    people = [
        [pid(1, "M", 1950), "张三明", "13812345678", "男", "H001", "", "户籍", ""],
        [pid(2, "F", 1952), "李四", "13900001111", "女", "H001", "", "户籍", ""],
        [pid(3, "F", 2015), "王小花", "", "女", "H001", "", "户籍", "留守儿童"],
        [pid(4, "M", 1940), "欧阳建国", "13700002222", "男", "H002", "", "户籍", "独居老人"],
        [pid(5, "M", 1990), "赵五", "13600003333", "男", "H003", "", "流动", "流动人口"],
        [pid(6, "F", 1992), "钱六", "13500004444", "女", "", "测绘路2号1栋201室", "流动", ""],
        [pid(7, "M", 1985), "孙七", "13400005555", "男", "H004", "", "户籍", ""],
        [bad_check(pid(8)), "周八", "13300006666", "男", "H004", "", "户籍", ""],           # row 9: check digit
        [pid(9, "M", 1985), "吴九", "123", "男", "H004", "", "户籍", ""],                   # row 10: bad phone
        [pid(10, "M", 1985), "郑十", "13200007777", "男", "", "无名路8号", "户籍", ""],        # row 11: unlinkable
    ]
    files["people"] = write_csv(tmp / "people.csv", ["身份证号", "姓名", "联系电话", "性别", "户号", "地址", "人口类型",
                                                     "重点人群"], people)
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["统一社会信用代码", "名称", "行业类别", "地址", "经度", "纬度"])
    good1 = make_credit_code("9", "1", "440104", "MA5TE5T01")
    good2 = make_credit_code("9", "2", "440104", "MA5TE5T02")
    ws.append([good1, "测绘餐厅", "餐饮", "测绘路2号1栋201室", 113.4195, 23.222])
    ws.append([good2, "网格便利店", "零售", "网格街5号", 113.410, 23.205])
    ws.append([good1[:17] + ("0" if good1[17] != "0" else "1"), "坏代码公司", "零售", "网格街5号", "", ""])  # row 4
    files["businesses"] = tmp / "businesses.xlsx"
    wb.save(files["businesses"])
    return files, {"people": people, "credit": (good1, good2)}
