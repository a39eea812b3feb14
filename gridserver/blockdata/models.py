"""Block-data tables as SQLAlchemy models (GeoAlchemy2 geometry columns).

The DDL lives in ``alembic/versions/0006_blockdata.py``; these declarations mirror it so the schema
reads in code and Alembic autogenerate can compare it with the database. Bulk and hot paths use
raw SQL / COPY on the same tables.
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (BigInteger, Column, Computed, DateTime, ForeignKey, Integer, Text, func)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def _common():
    return dict(
        grid_code=Column(Text, index=True),
        source=Column(Text, nullable=False, server_default="manual"),
        confirmed_at=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
        raw_row_id=Column(BigInteger, ForeignKey("bd_raw_rows.id")),
        created_at=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
        updated_at=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Import(Base):
    __tablename__ = "bd_imports"
    id = Column(BigInteger, primary_key=True)
    kind = Column(Text, nullable=False)
    source = Column(Text, nullable=False)
    file_name = Column(Text, nullable=False)
    file_hash = Column(Text, nullable=False)
    status = Column(Text, nullable=False, server_default="running")
    rows_total = Column(BigInteger, nullable=False, server_default="0")
    rows_done = Column(BigInteger, nullable=False, server_default="0")
    report = Column(JSONB, nullable=False, server_default="{}")
    job_id = Column(BigInteger)
    actor = Column(Text, nullable=False, server_default="import")
    started_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    finished_at = Column(DateTime(timezone=True))


class RawRow(Base):
    __tablename__ = "bd_raw_rows"
    id = Column(BigInteger, primary_key=True)
    import_id = Column(BigInteger, ForeignKey("bd_imports.id"), nullable=False)
    kind = Column(Text, nullable=False)
    source = Column(Text, nullable=False)
    row_no = Column(Integer, nullable=False)
    row_hash = Column(Text, nullable=False)
    data = Column(JSONB, nullable=False)


class ReviewItem(Base):
    __tablename__ = "bd_review"
    id = Column(BigInteger, primary_key=True)
    import_id = Column(BigInteger, ForeignKey("bd_imports.id"))
    kind = Column(Text, nullable=False)
    source = Column(Text, nullable=False)
    row_no = Column(Integer)
    column_name = Column(Text)
    status = Column(Text, nullable=False)
    reason = Column(Text, nullable=False)
    data = Column(JSONB, nullable=False, server_default="{}")
    created_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Building(Base):
    __tablename__ = "buildings"
    id = Column(BigInteger, primary_key=True)
    building_code = Column(Text, nullable=False, unique=True)
    address_code = Column(Text, index=True)
    name = Column(Text)
    geom = Column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True))
    geom_3857 = Column(Geometry("MULTIPOLYGON", srid=3857, spatial_index=True),
                       Computed("ST_Transform(geom, 3857)", persisted=True))
    floors = Column(Integer)
    use = Column(Text)
    year_built = Column(Integer)
    locals().update(_common())


class House(Base):
    __tablename__ = "houses"
    id = Column(BigInteger, primary_key=True)
    house_code = Column(Text, nullable=False, unique=True)
    building_code = Column(Text, index=True)
    address_code = Column(Text, index=True)
    floor = Column(Text)
    room = Column(Text)
    use = Column(Text)
    locals().update(_common())


class Household(Base):
    __tablename__ = "households"
    id = Column(BigInteger, primary_key=True)
    household_code = Column(Text, nullable=False, unique=True)
    house_code = Column(Text, index=True)
    building_code = Column(Text, index=True)
    address_code = Column(Text, index=True)
    kind = Column(Text)
    members = Column(Integer)
    locals().update(_common())


class Person(Base):
    __tablename__ = "people"
    id = Column(BigInteger, primary_key=True)
    id_hash = Column(Text, nullable=False, unique=True)
    id_masked = Column(Text, nullable=False)
    name = Column(Text, nullable=False)
    name_masked = Column(Text, nullable=False)
    phone_hash = Column(Text, index=True)
    phone_masked = Column(Text)
    sex = Column(Text)
    birth_year = Column(Integer)
    household_code = Column(Text, index=True)
    house_code = Column(Text, index=True)
    building_code = Column(Text, index=True)
    address_code = Column(Text, index=True)
    residence = Column(Text, nullable=False, server_default="registered")
    locals().update(_common())


class PersonTag(Base):
    __tablename__ = "person_tags"
    id = Column(BigInteger, primary_key=True)
    person_id = Column(BigInteger, ForeignKey("people.id"), nullable=False, index=True)
    tag = Column(Text, nullable=False)
    note = Column(Text)
    set_by = Column(Text, nullable=False)
    set_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    removed_by = Column(Text)
    removed_at = Column(DateTime(timezone=True))


class Business(Base):
    __tablename__ = "businesses"
    id = Column(BigInteger, primary_key=True)
    credit_code = Column(Text, nullable=False, unique=True)
    name = Column(Text, nullable=False)
    category = Column(Text)
    address_code = Column(Text, index=True)
    building_code = Column(Text, index=True)
    house_code = Column(Text)
    geom = Column(Geometry("POINT", srid=4326, spatial_index=True))
    geom_3857 = Column(Geometry("POINT", srid=3857, spatial_index=True),
                       Computed("ST_Transform(geom, 3857)", persisted=True))
    locals().update(_common())


class GridChange(Base):
    __tablename__ = "bd_grid_changes"
    id = Column(BigInteger, primary_key=True)
    kind = Column(Text, nullable=False)
    record_id = Column(BigInteger, nullable=False)
    old_grid = Column(Text)
    new_grid = Column(Text)
    changed_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    reason = Column(Text)


class Rollup(Base):
    __tablename__ = "bd_rollup"
    grid_code = Column(Text, primary_key=True)
    metric = Column(Text, primary_key=True)
    value = Column(BigInteger, nullable=False)
    last_at = Column(DateTime(timezone=True))


class AccessLog(Base):
    __tablename__ = "bd_access_log"
    id = Column(BigInteger, primary_key=True)
    at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    username = Column(Text, nullable=False)
    role = Column(Text, nullable=False)
    action = Column(Text, nullable=False)
    target = Column(Text, nullable=False)
    area_code = Column(Text)
    purpose = Column(Text)
    rows = Column(Integer, nullable=False, server_default="0")


class Dataset(Base):
    __tablename__ = "bd_datasets"
    name = Column(Text, primary_key=True)
    kind = Column(Text, nullable=False)
    provider = Column(Text, nullable=False)
    update_rule = Column(Text, nullable=False, server_default="monthly")
    last_update = Column(DateTime(timezone=True))
    row_count = Column(BigInteger, nullable=False, server_default="0")
    last_import_id = Column(BigInteger)
    last_outcome = Column(JSONB, nullable=False, server_default="{}")
