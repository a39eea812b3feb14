"""Request and response shapes of the incident API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, model_validator

from gridserver.geo.crs import KNOWN


class IncidentIn(BaseModel):
    """A new report. Coordinates are required for now: address-only reports need the geocoder
    (standard-address base), which comes later."""

    lon: float | None = Field(None, description="经度 longitude (or x of a projected CRS)", examples=[113.255])
    lat: float | None = Field(None, description="纬度 latitude (or y)", examples=[23.145])
    crs: str = Field("wgs84", description=f"坐标系 input CRS: {', '.join(KNOWN)} or EPSG:nnnn")
    category: str = Field(..., description="事件分类 category code, see GET /api/v1/incidents/categories")
    description: str = Field("", max_length=2000, description="事件描述 what happened (≤2000 characters)")
    address: str | None = Field(None, max_length=500, description="地址 address text, stored as given")

    @model_validator(mode="after")
    def _need_coordinates(self):
        if self.lon is None or self.lat is None:
            hint = (" (address-only reports are not supported yet: geocoding comes with the address base)"
                    if self.address else "")
            raise ValueError(f"lon and lat are both required 需要经纬度{hint}")
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


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    total: int = Field(description="所有符合条件的事件数 number of incidents matching the filters")
    limit: int
    offset: int | None = Field(description="offset of this page; null when paging by cursor")
    next: str | None = Field(description="下一页 URL of the next page, null on the last page")
