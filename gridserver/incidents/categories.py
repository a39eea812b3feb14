"""Incident categories (事件分类): first-level codes with Chinese labels.

The first slice's flat list, kept for code that needs labels without a database (demo generation).
The codes are the categories of the configurable taxonomy (``taxonomy.py``,
``data/taxonomy-yuexiu.yaml``), which is what intake, routing and the API use.
"""

CATEGORIES: dict[str, dict[str, str]] = {
    "city_appearance": {"label": "市容环境", "department": "城市管理和综合执法局"},
    "street_facility": {"label": "街面秩序", "department": "城市管理和综合执法局"},
    "public_facility": {"label": "公共设施", "department": "住房和城乡建设局"},
    "road_traffic": {"label": "道路交通", "department": "交通运输局"},
    "landscaping": {"label": "园林绿化", "department": "林业和园林局"},
    "water_drainage": {"label": "排水设施", "department": "水务局"},
    "construction": {"label": "违法建设", "department": "城市管理和综合执法局"},
    "fire_safety": {"label": "消防安全", "department": "消防救援大队"},
    "public_security": {"label": "治安隐患", "department": "公安分局"},
    "environment": {"label": "环境保护", "department": "生态环境分局"},
    "market": {"label": "市场监管", "department": "市场监督管理局"},
    "neighbourhood": {"label": "邻里纠纷", "department": "街道综治中心"},
    "social_service": {"label": "民生服务", "department": "民政局"},
    "other": {"label": "其他", "department": "街道综治中心"},
}


def category_label(code: str) -> str:
    return CATEGORIES.get(code, {}).get("label", code)
