"""The feature layers analysts read: one table of layers shared by OGC API Features, /query, /aggregate and exports.

Each layer says where its rows come from (SQL), which properties leave the server (never people,
never free-text descriptions, never reporter identities), its time column, which properties can be
filtered on, and who may read it:

* ``districts``/``streets``/``communities``/``grids`` are public (published boundaries);
* ``incidents`` need a token: admin/analyst see all, staff their scope (grid-code prefix), citizens
  their own reports — the rule of ``incidents.service``;
* ``buildings``/``businesses`` exist only when the block-data tables do (checked at request time);
  rows are limited to the caller's scope in SQL and every row is shaped by the block-data masking
  layer (``gridserver.blockdata.privacy.view_for`` + ``shape_building``/``shape_business``):
  analysts get de-identified rows (address generalised to the building), citizens nothing.
  People and households are never a collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text

from gridserver.auth.users import User
from gridserver.errors import Forbidden, NotFound, Unauthorized

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


@dataclass(frozen=True)
class Layer:
    id: str
    title: str  # zh-CN first
    description: str
    table: str  # FROM clause, the row alias is always ``t``
    base_where: str  # always-true condition of the layer (e.g. the admin level)
    id_sql: str
    props: dict[str, str]  # output property → SQL expression
    queryables: dict[str, str]  # filterable property → JSON type ("string", "integer", "number")
    time_start: str | None = None  # SQL of the feature's time (instant) or interval start
    time_end: str | None = None  # interval end (NULL = still valid)
    public: bool = False
    point: bool = False
    id_type: str = "string"
    required_table: str | None = None  # layer exists only when this table does
    extra: dict = field(default_factory=dict)
    # JSON type of an output property that is not a queryable ("date-time": a string in that format);
    # anything named in neither is a string
    prop_types: dict[str, str] = field(default_factory=dict)

    @property
    def geom_sql(self) -> str:
        return "t.geom"


def _area_layer(lid: str, level: str, title: str) -> Layer:
    return Layer(
        id=lid, title=title, description=f"{title}边界 current {level} boundaries (code, name, parent, area in m² in EPSG:4547)",
        table="admin_areas t", base_where=f"t.level = '{level}' AND t.valid_to IS NULL", id_sql="t.code",
        props={"code": "t.code", "name": "t.name", "level": "t.level", "parent_code": "t.parent_code",
               "area_m2": "round(t.area_m2::numeric, 1)::float8",
               "valid_from": "to_char(t.valid_from AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"},
        queryables={"code": "string", "name": "string", "parent_code": "string", "area_m2": "number"},
        time_start="t.valid_from", time_end="t.valid_to", public=True, prop_types={"valid_from": "date-time"},
    )


_INCIDENT_PROPS = {
    "category": "t.category", "status": "t.status", "grid_code": "t.grid_code",
    "community_code": "t.community_code", "street_code": "t.street_code", "district_code": "t.district_code",
    "created_at": "to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
}

LAYERS: dict[str, Layer] = {
    "districts": _area_layer("districts", "district", "区"),
    "streets": _area_layer("streets", "street", "街道"),
    "communities": _area_layer("communities", "community", "社区"),
    "grids": _area_layer("grids", "grid", "网格"),
    "incidents": Layer(
        id="incidents", title="事件", description="上报的城市管理事件 reported incidents (no descriptions, no reporters)",
        table="incidents t", base_where="TRUE", id_sql="t.id", props=_INCIDENT_PROPS,
        queryables={"category": "string", "status": "string", "grid_code": "string", "community_code": "string",
                    "street_code": "string", "district_code": "string", "id": "integer"},
        time_start="t.created_at", point=True, id_type="integer", prop_types={"created_at": "date-time"},
    ),
    "buildings": Layer(
        id="buildings", title="建筑", description="建筑物（按角色脱敏） buildings, shaped by the block-data privacy layer",
        table="buildings t", base_where="t.geom IS NOT NULL", id_sql="t.building_code",
        props={"building_code": "t.building_code", "address_code": "t.address_code", "name": "t.name",
               "floors": "t.floors", "use": "t.use", "year_built": "t.year_built", "grid_code": "t.grid_code"},
        queryables={"building_code": "string", "grid_code": "string", "floors": "integer", "use": "string",
                    "year_built": "integer"},
        required_table="buildings",
    ),
    "businesses": Layer(
        id="businesses", title="企业商户", description="企业与商户（按角色脱敏） businesses, shaped by the block-data privacy layer",
        table="businesses t", base_where="t.geom IS NOT NULL", id_sql="t.credit_code",
        props={"credit_code": "t.credit_code", "name": "t.name", "category": "t.category",
               "address_code": "t.address_code", "building_code": "t.building_code", "house_code": "t.house_code",
               "grid_code": "t.grid_code"},
        queryables={"category": "string", "grid_code": "string", "building_code": "string", "credit_code": "string"},
        point=True, required_table="businesses",
    ),
}

#: Point layers that can be aggregated and exported by /query and /aggregate.
POINT_LAYERS = [k for k, v in LAYERS.items() if v.point]


def table_exists(conn, name: str) -> bool:
    return conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar_one()


def _privacy():
    try:
        from gridserver.blockdata import privacy  # the one masking layer (block-data issue)
    except ModuleNotFoundError:
        return None
    return privacy


def available_layers(conn) -> list[Layer]:
    """The layers present in this database (block-data layers only when their tables exist)."""
    return [lay for lay in LAYERS.values() if lay.required_table is None or table_exists(conn, lay.required_table)]


def may_read(user: User | None, layer: Layer) -> bool:
    if layer.public:
        return True
    if user is None:
        return False
    if layer.required_table and user.role == "citizen":
        return False
    return True


def get_layer(conn, layer_id: str, user: User | None) -> Layer:
    """The layer ``layer_id``; 404 naming the available ones, 401 when it needs a token and none was sent."""
    layers = {lay.id: lay for lay in available_layers(conn)}
    if layer_id not in layers:
        raise NotFound(f"没有此图层 no collection/layer {layer_id!r}; available: {', '.join(layers)}")
    layer = layers[layer_id]
    if not may_read(user, layer):
        if user is not None:
            raise Forbidden(f"角色 {user.role} 不能读取图层 {layer_id} role {user.role!r} may not read {layer_id!r}")
        raise Unauthorized(f"图层 {layer_id} 需要登录 collection {layer_id!r} needs a bearer token "
                           "(POST /api/v1/auth/token); public collections: districts, streets, communities, grids")
    return layer


def visibility(layer: Layer, user: User | None) -> tuple[str, dict]:
    """SQL condition (alias ``t``) restricting ``layer`` to what ``user`` may see."""
    if layer.public:
        return "TRUE", {}
    assert user is not None
    if layer.id == "incidents":
        if user.role == "citizen":
            return "t.reporter_id = :viewer_id", {"viewer_id": user.id}
    elif user.role == "citizen":  # block data: citizens see none (privacy.view_for)
        return "FALSE", {}
    if user.scope_code is None:
        return ("TRUE", {}) if user.role in ("admin", "analyst") else ("FALSE", {})
    return "t.grid_code LIKE :viewer_scope", {"viewer_scope": user.scope_code + "%"}


def mask_properties(layer: Layer, user: User | None, props: dict) -> dict:
    """Block-data rows go through the block-data masking layer (``privacy.shape_*`` for the caller's view)."""
    if layer.required_table is None:
        return props
    privacy = _privacy()
    if privacy is None:  # no masking layer in this build: publish only codes and public attributes
        return {k: v for k, v in props.items() if k not in ("name", "address_code", "house_code", "credit_code")}
    view = privacy.view_for(user, props.get("grid_code") or "")
    if view == privacy.NONE:  # the SQL visibility already excludes these rows; never leak one
        return {}
    shape = privacy.shape_building if layer.id == "buildings" else privacy.shape_business
    return shape(props, view)
