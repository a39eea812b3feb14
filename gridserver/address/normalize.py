"""Address text normalisation: width, variant characters, Chinese numerals, and missing upper levels.

Two levels of normalisation live here:

* :func:`normalize_chars` maps character by character (full-width → half-width, traditional/variant →
  simplified). It never changes the length, so offsets computed on its output are offsets into the
  original string; the parser uses it before tagging.
* :func:`normalize_address` additionally rewrites Chinese numerals that number a road, house, floor or
  room (``十三号`` → ``13号``, ``二楼`` → ``2楼``), removes whitespace and upper-cases Latin letters. Its
  output is meant for matching, not for offsets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

# Traditional / variant → simplified, limited to characters that occur in addresses. One character to
# one character, so the mapping preserves length.
_VARIANTS = (
    "號号 棟栋 樓楼 廣广 東东 區区 門门 層层 單单 園园 裏里 裡里 衛卫 縣县 鎮镇 鄉乡 貴贵 "
    "灣湾 島岛 橋桥 街街 莊庄 陽阳 聖圣 華华 國国 興兴 龍龙 鳳凤 寶宝 雲云 氣气 電电 車车 "
    "場场 廠厂 廳厅 館馆 醫医 學学 業业 農农 藥药 銀银 貨货 買买 賣卖 員员 會会 處处 辦办 "
    "總总 體体 廈厦 廟庙 際际 鐵铁 環环 紅红 綠绿 藍蓝 黃黄 灣湾 馬马 鳥鸟 魚鱼 豐丰 開开 "
    "關关 間间 閣阁 閘闸 陳陈 劉刘 張张 楊杨 趙赵 吳吴 鄭郑 謝谢 羅罗 韓韩 葉叶 蘇苏 盧卢 "
    "萬万 與与 為为 這这 來来 們们 個个 書书 長长 師师 庫库 廣广 齊齐 滬沪 漢汉 瀋沈 遼辽 "
    "黑黑 蘭兰 寧宁 陝陕 雞鸡 鶴鹤 淩凌 湯汤 濱滨 澤泽 潤润 溝沟 壩坝 嶺岭 巖岩 崗岗 嶼屿 "
    "塢坞 牆墙 壇坛 墳坟 臺台 檯台 灣湾 隊队 營营 礦矿 碼码 頭头 線线 網网 組组 織织 經经 "
    "濟济 區区 發发 展展 產产 貿贸 務务 檔档 舖铺 鋪铺 餐餐 飯饭 賓宾 驛驿 樂乐 藝艺 術术 "
    "聯联 對对 過过 還还 進进 遠远 達达 連连 運运 邊边 幢幢 塊块 堅坚 麗丽 豬猪 貓猫 鐘钟 "
    "鍾钟 錦锦 鋼钢 銅铜 鑫鑫 錢钱 釣钓 針针 實实 審审 寫写 寬宽 隱隐 險险 陰阴 陸陆 雙双 "
    "離离 難难 雜杂 雞鸡 靜静 順顺 頂顶 項项 預预 領领 頤颐 題题 風风 飛飞 養养 餘余 駐驻 "
    "騰腾 鵬鹏 鶯莺 鹽盐 麥麦 點点 齒齿 佈布 傳传 僑侨 優优 儲储 兒儿 內内 兩两 冊册 劃划 "
    "動动 勝胜 勞劳 勢势 匯汇 協协 廁厕 參参 號号 嚴严 團团 圍围 圖图 圓圆 圖图 堯尧 報报 "
    "場场 塵尘 墾垦 壓压 壯壮 壺壶 夢梦 夾夹 奮奋 婦妇 孫孙 寢寝 將将 專专 尋寻 屆届 屬属 "
    "岡冈 峽峡 廂厢 廣广 彎弯 強强 歸归 當当 後后 從从 復复 徵征 態态 慶庆 憑凭 戰战 戶户 "
    "撫抚 擁拥 擇择 據据 擴扩 攝摄 敵敌 數数 斷断 時时 晉晋 暢畅 曆历 曉晓 書书 會会 棧栈 "
    "條条 楓枫 榮荣 槍枪 樣样 橫横 檢检 櫃柜 權权 歐欧 歲岁 歷历 殘残 殼壳 氣气 決决 沒没 "
    "滿满 漁渔 潔洁 澳澳 濕湿 灘滩 災灾 無无 煙烟 燈灯 燒烧 營营 爭争 爺爷 牽牵 獅狮 獎奖 "
    "現现 瑪玛 環环 產产 畝亩 畫画 療疗 發发 盤盘 盧卢 眾众 礎础 祿禄 禮礼 種种 穩稳 窯窑 "
    "競竞 筆笔 築筑 簡简 糧粮 紀纪 紐纽 純纯 紙纸 級级 細细 終终 結结 絲丝 絡络 給给 統统 "
    "絹绢 綜综 維维 綿绵 緣缘 練练 縱纵 總总 繁繁 繩绳 繼继 續续 罷罢 義义 習习 聚聚 職职 "
    "聽听 脈脉 腦脑 臨临 舊旧 艙舱 艦舰 莊庄 華华 萊莱 葯药 蒼苍 蓋盖 蓮莲 薑姜 藥药 蘆芦 "
    "蘋苹 蟲虫 衝冲 補补 裝装 製制 複复 規规 視视 親亲 覺觉 觀观 訂订 記记 設设 許许 診诊 "
    "証证 試试 詩诗 話话 誠诚 語语 說说 課课 調调 談谈 請请 諾诺 證证 識识 警警 譯译 議议 "
    "護护 讀读 變变 豊丰 貝贝 財财 貨货 質质 購购 贊赞 趕赶 躍跃 車车 軍军 軒轩 軟软 輕轻 "
    "輪轮 轉转 辭辞 農农 迴回 適适 選选 遺遗 還还 邁迈 鄧邓 鄰邻 醬酱 釘钉 鈞钧 鈴铃 鉅巨 "
    "鋁铝 錄录 鍋锅 鍵键 鎖锁 鏡镜 鑽钻 長长 閃闪 閉闭 閔闵 閩闽 闆板 闊阔 闖闯 陣阵 陽阳 "
    "隨随 隻只 雖虽 雞鸡 電电 霧雾 靈灵 韻韵 頁页 頓顿 頻频 顏颜 顧顾 顯显 飄飘 餅饼 館馆 "
    "饒饶 駕驾 驗验 體体 髮发 鬥斗 魯鲁 鮮鲜 鴻鸿 鵝鹅 麵面 黨党 龐庞 龜龟 衚胡 衕同 "
    "壹一 貳二 叁三 參参 肆四 伍五 陸陆 柒七 捌八 玖九 拾十"
)
_SIMPLIFY = {}
for _pair in _VARIANTS.split():
    if len(_pair) == 2 and _pair[0] != _pair[1]:
        _SIMPLIFY.setdefault(ord(_pair[0]), _pair[1])

# Financial numerals are names for digits only in amounts; in addresses 壹/貳 are rare but when they
# appear they number things, so map them to the plain numerals the rest of the code understands.
_SIMPLIFY.update({ord("壹"): "一", ord("貳"): "二", ord("叁"): "三", ord("肆"): "四", ord("伍"): "五",
                  ord("柒"): "七", ord("捌"): "八", ord("玖"): "九", ord("拾"): "十"})


def _build_char_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0xFF01, 0xFF5F):  # full-width ASCII block
        table[code] = chr(code - 0xFEE0)
    table[0x3000] = " "  # ideographic space
    table.update({ord("－"): "-", ord("—"): "-", ord("–"): "-", ord("―"): "-", ord("－"): "-",
                  ord("〇"): "〇", ord("·"): "·", ord("\t"): " ", ord("\u00a0"): " "})
    table.update(_SIMPLIFY)
    return table


CHAR_TABLE: dict[int, str] = _build_char_table()


def normalize_chars(text: str) -> str:
    """Map full-width characters to half-width and traditional/variant characters to simplified.

    Promise: ``len(normalize_chars(s)) == len(s)`` and character ``i`` of the result comes from
    character ``i`` of ``s``; offsets therefore carry over unchanged.
    """
    return text.translate(CHAR_TABLE)


# --- Chinese numerals -----------------------------------------------------------------------------

_DIGIT = {"零": 0, "〇": 0, "○": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
          "六": 6, "七": 7, "八": 8, "九": 9}
_UNIT = {"十": 10, "百": 100, "千": 1000}
_NUMERAL_CHARS = "".join(_DIGIT) + "".join(_UNIT)
# Units that make a preceding numeral a number (of a road, house, unit, floor, room ...). 元 alone is
# not a unit (三元里 is a name): only 单元 is.
NUMBERED = re.compile(f"([{_NUMERAL_CHARS}]+)(?=号|栋|幢|座|单元|层|楼|室|房|弄|巷|期|区(?!域)|街(?!道))")
# 区/街 after a numeral are numbered only in forms like 三区 / 二街; excluded: 区域, 街道. The
# parser's tokeniser uses the same pattern to read 十三号 like 13号.


def chinese_numeral_value(numeral: str) -> int | None:
    """Value of a Chinese numeral run (``十三`` → 13, ``一百零五`` → 105, ``三〇二`` → 302), else None."""
    if not numeral or any(ch not in _DIGIT and ch not in _UNIT for ch in numeral):
        return None
    if not any(ch in _UNIT for ch in numeral):
        # Digit-by-digit form: 三〇二 → 302. 两 is not used this way.
        if "两" in numeral and len(numeral) > 1:
            return None
        return int("".join(str(_DIGIT[ch]) for ch in numeral))
    total, current = 0, None
    last_unit = 10_000
    for ch in numeral:
        if ch in _DIGIT:
            if current is not None and _DIGIT[ch] != 0:
                return None  # two digits in a row inside a unit form: not a number we understand
            current = _DIGIT[ch] if _DIGIT[ch] != 0 else None
        else:
            unit = _UNIT[ch]
            if unit >= last_unit:
                return None  # 十百 etc.: malformed
            total += (1 if current is None else current) * unit
            current, last_unit = None, unit
    if current is not None:
        total += current
    return total


def numerals_to_arabic(text: str) -> str:
    """Rewrite Chinese numeral runs directly followed by a numbering unit as Arabic digits.

    ``十三号`` → ``13号``, ``二楼`` → ``2楼``, ``三单元`` → ``3单元``; numerals inside names (``三元里``,
    ``五羊新城``, ``十三行路``) are left alone because no unit follows them. Changes the length.
    """
    def repl(m: re.Match) -> str:
        value = chinese_numeral_value(m.group(1))
        return m.group(1) if value is None else str(value)

    return NUMBERED.sub(repl, text)


_SPACES = re.compile(r"\s+")
# Sub-numbers of a house: 13之1号, 13号之一, 13号之1 → 13-1号 (the standard writes 13-1号).
# A Chinese sub-number may be followed by a building number (2号之一3栋); an Arabic one may not (之13栋).
_ZHI = re.compile(f"(\\d+)号?之(?:(\\d+)(?:号|(?!\\d|栋|幢|座|单元|层|楼|室|房))|([{_NUMERAL_CHARS}]+)(?:号|(?!栋|幢|座|单元|层|楼|室|房)))")


def _zhi(m: re.Match) -> str:
    sub = m.group(2) if m.group(2) else chinese_numeral_value(m.group(3))
    return m.group(0) if sub is None else f"{m.group(1)}-{sub}号"


def normalize_address(text: str) -> str:
    """Full normalisation for matching: width, variants, numerals → digits, no whitespace, Latin upper case.

    Two spellings of the same address (``廣州市越秀區中山四路十三號`` and ``广州市越秀区中山四路13号``)
    normalise to the same string. Not offset-preserving.
    """
    text = normalize_chars(text)
    text = _SPACES.sub("", text)
    text = numerals_to_arabic(text)
    if "之" in text:
        text = _ZHI.sub(_zhi, text)
    return text.upper()


# --- Filling missing upper levels ------------------------------------------------------------------

UPPER_LEVELS = ("prov", "city", "district")
YUEXIU = ("广东省", "广州市", "越秀区")


def _strip_road_suffix(name: str) -> str:
    # OSM names carry side roads as 东华北路辅路; addresses say 东华北路.
    return name[:-2] if name.endswith("辅路") and len(name) > 3 else name


def road_index_from_geojson(path: Path, upper: tuple[str, str, str] = YUEXIU) -> dict[str, tuple[str, str, str]]:
    """Road name → (prov, city, district) from the ``name`` property of a GeoJSON of roads.

    Every named feature gets the same ``upper`` triple; a missing or unreadable file gives ``{}``.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    index: dict[str, tuple[str, str, str]] = {}
    for feature in data.get("features", []):
        name = (feature.get("properties") or {}).get("name")
        if isinstance(name, str) and name.strip():
            index[normalize_address(_strip_road_suffix(name.strip()))] = upper
    return index


@lru_cache(maxsize=1)
def default_road_index() -> dict[str, tuple[str, str, str]]:
    """The Yuexiu road index built from the shared OSM roads file (empty when the file is absent)."""
    from gridserver.settings import get_settings

    return road_index_from_geojson(get_settings().yuexiu_dir / "yuexiu_roads_osm_wgs84.geojson")


def _as_mapping(components) -> dict[str, str]:
    if isinstance(components, Mapping):
        return {str(k).lower(): v for k, v in components.items() if v}
    out: dict[str, str] = {}
    for c in components:
        label, text = (c.label, c.text) if hasattr(c, "label") else (c["label"], c["text"])
        out.setdefault(label.lower(), text)  # the first occurrence of a level wins
    return out


def fill_upper_levels(components: Mapping[str, str] | Iterable, road_index: Mapping[str, tuple[str, str, str]]) -> dict[str, str]:
    """Return ``{level: value}`` with prov/city/district filled in from the road when they are missing.

    ``components`` is a ``{level: text}`` mapping or a list of parsed components (the first of each
    level is kept). When the road (or subroad) is a key of ``road_index`` (compared after
    :func:`normalize_address`), the missing levels among prov/city/district are taken from the index.
    Levels already present are never overwritten; if a present level contradicts the index (another
    district), nothing is filled, since the road is then probably a namesake elsewhere.
    """
    levels = _as_mapping(components)
    for key in ("road", "subroad"):
        road = levels.get(key)
        if not road:
            continue
        upper = road_index.get(normalize_address(road))
        if upper is None:
            continue
        present = {lvl: normalize_address(levels[lvl]) for lvl in UPPER_LEVELS if levels.get(lvl)}
        known = dict(zip(UPPER_LEVELS, upper))
        if any(not _same_area(val, normalize_address(known[lvl])) for lvl, val in present.items()):
            return levels
        for lvl in UPPER_LEVELS:
            levels.setdefault(lvl, known[lvl])
        break
    return levels


def _same_area(a: str, b: str) -> bool:
    # 广州 and 广州市, 越秀 and 越秀区 name the same area.
    strip = "省市区县"
    return a == b or a.rstrip(strip) == b.rstrip(strip)
