"""Patrols (巡查): a grid worker's daily round recorded as a GPS track, and how much of each grid
today's tracks covered.

* ``POST /api/v1/patrols`` starts one (``client_key`` makes a replayed start return the same patrol);
* ``POST /api/v1/patrols/{id}/points`` adds a batch of points numbered by the phone (``seq``): a
  batch re-sent after a network drop stores nothing twice (primary key patrol, seq);
* ``POST /api/v1/patrols/{id}/stop``; ``GET /api/v1/patrols/{id}`` (track as GeoJSON);
* ``GET /api/v1/patrols/coverage?area=&date=``: per grid, the share of its area within
  ``COVER_RADIUS_M`` of the day's tracks (EPSG:4547), for the caller's own grid or, for supervisors,
  every grid in their scope.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridserver.areas.locate import to_storage
from gridserver.auth.deps import current_user, describe_scope, user_in_scope
from gridserver.auth.users import User
from gridserver.db.engine import get_session
from gridserver.errors import Forbidden, InvalidInput, NotFound

#: A grid is covered where it lies within this distance of a track.
COVER_RADIUS_M = 30.0
MAX_BATCH = 5000
PATROL_ROLES = ("grid_worker", "community_operator", "street_operator", "district_operator", "admin")


class PatrolStart(BaseModel):
    client_key: str | None = Field(None, max_length=100, description="客户端生成的唯一键 (replays return the same patrol)")


class TrackPoint(BaseModel):
    seq: int = Field(..., ge=0, description="手机端序号 point number within the patrol")
    lon: float
    lat: float
    t: datetime = Field(..., description="GPS 时间 ISO 8601")
    accuracy: float | None = Field(None, ge=0, description="精度 (m)")


class PointBatch(BaseModel):
    crs: str = Field("wgs84", description="坐标系 wgs84 | gcj02 | bd09 | cgcs2000 | EPSG:nnnn")
    points: list[TrackPoint]


def start_patrol(session: Session, user: User, client_key: str | None) -> dict:
    """A new patrol for ``user`` (or the one already started with ``client_key``)."""
    if user.role not in PATROL_ROLES:
        raise Forbidden(f"角色 {user.role} 不能巡查 role {user.role!r} may not record patrols")
    grid = user.scope_code if user.scope_code and len(user.scope_code) == 15 else None
    row = session.execute(text(
        """INSERT INTO patrols (user_id, grid_code, client_key) VALUES (:u, :g, :k)
           ON CONFLICT (client_key) DO NOTHING RETURNING id"""), {"u": user.id, "g": grid, "k": client_key}).first()
    if row is None:
        owner, pid = session.execute(text("SELECT user_id, id FROM patrols WHERE client_key = :k"),
                                     {"k": client_key}).one()
        if owner != user.id:
            raise Forbidden(f"client_key {client_key!r} belongs to another user's patrol")
        return get_patrol(session, user, pid)
    return get_patrol(session, user, row[0])


def _own(session: Session, user: User, patrol_id: int) -> dict:
    row = session.execute(text("SELECT id, user_id, grid_code, started_at, ended_at FROM patrols WHERE id = :id"),
                          {"id": patrol_id}).first()
    if row is None:
        raise NotFound(f"巡查 {patrol_id} 不存在 no patrol {patrol_id}")
    p = dict(row._mapping)
    if p["user_id"] != user.id and not (user.role in ("admin", "analyst") or
                                        (p["grid_code"] and user_in_scope(user, p["grid_code"]))):
        raise Forbidden(f"巡查 {patrol_id} 不属于您 patrol {patrol_id} belongs to another user")
    return p


def add_points(session: Session, user: User, patrol_id: int, batch: PointBatch) -> dict:
    """Store a batch of track points; ones already stored (same seq) are skipped, never doubled."""
    p = _own(session, user, patrol_id)
    if p["user_id"] != user.id:
        raise Forbidden(f"只能上传本人的巡查轨迹 only the patrol's owner may add points to patrol {patrol_id}")
    if len(batch.points) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} points per batch, got {len(batch.points)}")
    rows = []
    for i, pt in enumerate(batch.points):
        try:
            lon, lat, _ = to_storage(pt.lon, pt.lat, batch.crs)
        except InvalidInput as exc:
            raise InvalidInput(f"points[{i}] (seq {pt.seq}): {exc.detail}") from None
        rows.append({"p": patrol_id, "s": pt.seq, "t": pt.t, "a": pt.accuracy, "lon": float(lon), "lat": float(lat)})
    stored = 0
    if rows:
        stored = session.execute(text(
            """INSERT INTO patrol_points (patrol_id, seq, recorded_at, accuracy_m, geom)
               SELECT :p, s, t, a, ST_SetSRID(ST_MakePoint(lon, lat), 4326)
               FROM json_to_recordset(CAST(:rows AS json)) AS r(s int, t timestamptz, a real, lon float8, lat float8)
               ON CONFLICT (patrol_id, seq) DO NOTHING"""),
            {"p": patrol_id, "rows": json.dumps([{**r, "t": r["t"].isoformat()} for r in rows])}).rowcount
    return {"patrol_id": patrol_id, "received": len(rows), "stored": stored, "duplicates": len(rows) - stored,
            "input_crs": batch.crs}


def stop_patrol(session: Session, user: User, patrol_id: int) -> dict:
    p = _own(session, user, patrol_id)
    if p["user_id"] != user.id:
        raise Forbidden(f"only the patrol's owner may stop patrol {patrol_id}")
    session.execute(text("UPDATE patrols SET ended_at = coalesce(ended_at, now()) WHERE id = :id"), {"id": patrol_id})
    return get_patrol(session, user, patrol_id)


def get_patrol(session: Session, user: User, patrol_id: int) -> dict:
    """One patrol with its track (GeoJSON LineString in WGS84) and length in metres (EPSG:4547)."""
    p = _own(session, user, patrol_id)
    track = session.execute(text(
        """SELECT count(*) AS n, ST_AsGeoJSON(ST_MakeLine(geom ORDER BY seq)) AS line,
                  ST_Length(ST_Transform(ST_MakeLine(geom ORDER BY seq), 4547)) AS length_m
           FROM patrol_points WHERE patrol_id = :id"""), {"id": patrol_id}).one()
    return {"id": p["id"], "grid_code": p["grid_code"], "started_at": p["started_at"], "ended_at": p["ended_at"],
            "points": track.n, "length_m": round(track.length_m or 0.0, 1),
            "track": json.loads(track.line) if track.line else None}


COVERAGE_SQL = """
WITH day AS (
    SELECT (CAST(:day AS date)::timestamp AT TIME ZONE 'Asia/Shanghai') AS t0,
           ((CAST(:day AS date) + 1)::timestamp AT TIME ZONE 'Asia/Shanghai') AS t1
),
grids AS (
    SELECT code, name, ST_Transform(geom, 4547) AS g FROM admin_areas
    WHERE level = 'grid' AND valid_to IS NULL AND code LIKE :prefix
),
tracks AS (
    SELECT p.id, ST_Transform(ST_MakeLine(pp.geom ORDER BY pp.seq), 4547) AS line
    FROM patrols p JOIN patrol_points pp ON pp.patrol_id = p.id, day
    WHERE pp.recorded_at >= day.t0 AND pp.recorded_at < day.t1 {owner}
    GROUP BY p.id
),
swept AS (
    SELECT ST_Union(ST_Buffer(line, :radius)) AS g, count(*) AS n FROM tracks
)
SELECT grids.code, grids.name, swept.n AS patrols,
       CASE WHEN swept.g IS NULL THEN 0
            ELSE ST_Area(ST_Intersection(grids.g, swept.g)) / nullif(ST_Area(grids.g), 0) END AS coverage,
       CASE WHEN :geometry AND swept.g IS NOT NULL
            THEN ST_AsGeoJSON(ST_Transform(ST_Intersection(grids.g, swept.g), 4326), 6) END AS covered
FROM grids CROSS JOIN swept
ORDER BY grids.code
"""


def coverage(session: Session, user: User, area: str | None, day: date, geometry: bool, mine: bool) -> dict:
    """Share of each grid under ``area`` (default: the caller's scope) swept by the day's patrols."""
    prefix = area or user.scope_code or ""
    if not user_in_scope(user, prefix or None) and not (user.role in ("admin", "analyst") and user.scope_code is None):
        raise Forbidden(f"区域 {prefix} 不在您的管辖范围 {describe_scope(user)} 内 area {prefix!r} is outside your scope")
    if not prefix.isdigit() and prefix:
        raise InvalidInput(f"area must be an area code (digits), got {area!r}")
    owner = "AND p.user_id = :uid" if mine else ""
    rows = session.execute(text(COVERAGE_SQL.replace("{owner}", owner)),
                           {"day": day.isoformat(), "prefix": prefix + "%", "radius": COVER_RADIUS_M,
                            "geometry": geometry, "uid": user.id}).all()
    return {"date": day.isoformat(), "area": prefix or None, "radius_m": COVER_RADIUS_M,
            "grids": [{"grid_code": r.code, "name": r.name, "coverage": round(float(r.coverage or 0), 4),
                       **({"covered": json.loads(r.covered) if r.covered else None} if geometry else {})}
                      for r in rows]}


router = APIRouter(prefix="/api/v1/patrols", tags=["巡查 patrols"])


@router.post("", status_code=201, summary="开始巡查 start a patrol")
def start(body: PatrolStart = Body(default_factory=PatrolStart), session: Session = Depends(get_session, scope="function"),
          user: User = Depends(current_user)):
    out = start_patrol(session, user, body.client_key)
    session.commit()
    return out


@router.get("/coverage", summary="巡查覆盖率 patrol coverage per grid for a day")
def coverage_route(area: str | None = Query(None, description="区划编码 (default: your scope)"),
                   day: date | None = Query(None, alias="date", description="日期 YYYY-MM-DD (default: today, UTC+8)"),
                   geometry: bool = Query(False, description="返回已覆盖范围 GeoJSON"),
                   mine: bool = Query(False, description="只算本人的巡查"),
                   session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)):
    from zoneinfo import ZoneInfo

    day = day or datetime.now(ZoneInfo("Asia/Shanghai")).date()
    return coverage(session, user, area, day, geometry, mine)


@router.post("/{patrol_id}/points", summary="上传轨迹点 add a batch of track points")
def points(patrol_id: int, body: PointBatch, session: Session = Depends(get_session, scope="function"),
           user: User = Depends(current_user)):
    out = add_points(session, user, patrol_id, body)
    session.commit()
    return out


@router.post("/{patrol_id}/stop", summary="结束巡查 stop a patrol")
def stop(patrol_id: int, session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)):
    out = stop_patrol(session, user, patrol_id)
    session.commit()
    return out


@router.get("/{patrol_id}", summary="巡查详情 one patrol with its track")
def get(patrol_id: int, session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)):
    return get_patrol(session, user, patrol_id)
