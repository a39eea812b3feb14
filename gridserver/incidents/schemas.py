"""Request and response shapes of the incident API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, model_validator

from gridserver.geo.crs import KNOWN


class IncidentIn(BaseModel):
    """A new report: a point (lon/lat in ``crs``), or only an address text, which is then geocoded
    from the standard address base (the response says so, with the confidence)."""

    lon: float | None = Field(None, description="经度 longitude (or x of a projected CRS)", examples=[113.255])
    lat: float | None = Field(None, description="纬度 latitude (or y)", examples=[23.145])
    crs: str = Field("wgs84", description=f"坐标系 input CRS: {', '.join(KNOWN)} or EPSG:nnnn")
    category: str = Field(..., description="事件分类 category code, see GET /api/v1/incidents/categories")
    description: str = Field("", max_length=2000, description="事件描述 what happened (≤2000 characters)")
    address: str | None = Field(None, max_length=500,
                                description="地址 address text; without lon/lat it is geocoded from the address base")
    contact: dict | None = Field(None, description="联系方式 reporter contact (name/phone), never shown publicly")
    channel: str | None = Field(None, description="渠道 'business' for a business's appeal (越秀商家); default by role")
    confirm_grid: str | None = Field(None, description="确认网格 near a boundary: the grid the reporter confirms "
                                                       "(must lie within a few metres of the point)")
    webhook_url: str | None = Field(None, max_length=500, pattern=r"^https?://",
                                    description="状态变更通知 URL POSTed on every status change of this report")

    @model_validator(mode="after")
    def _need_a_place(self):
        if (self.lon is None) != (self.lat is None):
            raise ValueError("lon and lat are both required 需要经纬度 (or neither, with an address)")
        if self.lon is None and not (self.address and self.address.strip()):
            raise ValueError("give lon and lat, or an address 需要经纬度或地址")
        return self


class IncidentOut(BaseModel):
    id: int
    category: str
    category_label: str
    description: str
    status: str
    lon: float = Field(description="WGS84")
    lat: float = Field(description="WGS84")
    input_crs: str
    input_x: float | None = None
    input_y: float | None = None
    address: str | None = None
    geocoded: bool = Field(False, description="位置由地址解析得到 the point came from geocoding the address")
    geocode_confidence: float | None = Field(None, description="地址解析置信度 0–1, when geocoded")
    address_code: str | None = Field(None, description="标准地址编码 standard address the text matched")
    grid_code: str | None
    grid_name: str | None
    community_code: str | None
    community_name: str | None
    street_code: str | None
    street_name: str | None
    district_code: str | None
    district_name: str | None = None
    created_at: datetime
    reporter: str | None = Field(description="上报人用户名 username of the reporter")
    item_code: str | None = Field(None, description="事项 taxonomy item (leaf) code, when filed with one")
    item_label: str | None = None
    workflow: str = "general"
    channel: str = "staff"
    department: str | None = Field(None, description="责任部门 responsible department code (routing)")
    department_name: str | None = None
    route_level: str | None = Field(None, description="派遣层级 grid/community/street/district")
    route_area_code: str | None = None
    route_rule: dict | None = Field(None, description="派遣依据 the routing rule that made the decision")
    manual_reason: str | None = Field(None, description="人工派遣原因 why it waits for manual dispatch")
    near_boundary: dict | None = Field(None, description="靠近边界 neighbouring areas within a few metres")
    due_at: datetime | None = Field(None, description="当前环节时限 due time of the current step")
    deadline_at: datetime | None = Field(None, description="办结时限 overall handling deadline")
    overdue: bool | None = None
    escalation_level: int = 0
    supervised: bool = False
    supervision_note: str | None = None
    merged_into: int | None = None
    tracking_code: str | None = Field(None, description="查询码 public tracking code")
    rating: str | None = None
    rating_comment: str | None = None
    reopen_count: int = 0
    updated_at: datetime | None = None
    closed_at: datetime | None = None
    duplicates: list[dict] | None = Field(None, description="疑似重复 duplicate candidates (at intake)")


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    total: int = Field(description="所有符合条件的事件数 number of incidents matching the filters")
    limit: int
    offset: int | None = Field(description="offset of this page; null when paging by cursor")
    next: str | None = Field(description="下一页 URL of the next page, null on the last page")
