"""One settings object for the whole project (pydantic-settings, read once).

Environment variables use the ``GRIDSERVER_`` prefix, except ``DATABASE_URL`` which is read as is.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Geometry is stored in WGS84 (EPSG:4326). OSM and GPS data arrive in it, CGCS2000 (EPSG:4490)
#: differs from it by well under a metre, and PostGIS/MapLibre speak it natively.
STORAGE_SRID = 4326
#: Areas and distances are computed in CGCS2000 / 3-degree Gauss-Kruger CM 114E (metres),
#: the projection Guangzhou's own survey data uses.
METRIC_CRS = "EPSG:4547"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDSERVER_", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "GRIDSERVER_DATABASE_URL")
    )
    home: Path = Field(default=Path(".gridserver"), description="data dir of the embedded PostGIS")
    pg_port: int = Field(default=55432, description="port of the embedded PostGIS")
    pg_bindir: Path | None = Field(default=None, description="PostgreSQL binaries to use")
    db_name: str = "gridserver"
    shared_dir: Path = Path("../shared")
    gis_data_dir: Path = Path("gis_data")
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: str | None = None
    jwt_expire_minutes: int = Field(default=30, description="access token lifetime; refresh tokens renew it")
    jwt_refresh_days: int = Field(default=7, description="refresh token lifetime (rotating, revocable)")
    bcrypt_rounds: int = Field(default=12, ge=4, le=16, description="bcrypt cost of new password hashes")
    demo_mode: bool = Field(default=False, description="set by `gridserver demo`: demo accounts may log in")
    trusted_proxies: str = Field(default="", description="comma-separated proxy addresses/networks whose "
                                 "X-Forwarded-For is honoured (default none: the socket peer is the client)")
    login_ip_limit: int = Field(default=50, ge=1, description="failed logins per client address in 5 minutes → 429")
    access_log_retention_days: int = Field(default=365, ge=183, description="personal-data access log rows older "
                                           "than this are purged daily (job access_log.purge); at least 183 (6 months)")
    pool_size: int = 8
    connect_timeout: int = Field(default=3, description="seconds to wait for a database connection")
    statement_timeout_ms: int = Field(default=30_000, description="API connections: longest SQL statement in ms (0 = no limit)")
    retry_after: int = Field(default=3, description="Retry-After seconds sent with 503 when the database is unavailable")
    tile_revision_ttl: float = Field(default=1.0, ge=0, description="seconds a process trusts the areas revision it "
                                     "last read before serving cached area tiles (0 = read it on every request)")
    tianditu_key: str | None = Field(default=None, description="天地图 key: offers the Tianditu WMTS basemap on /map "
                                                            "(off by default; needs internet)")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str) -> str:
        import ipaddress

        for part in filter(None, (p.strip() for p in v.split(","))):
            ipaddress.ip_network(part, strict=False)  # ValueError names the bad entry
        return v

    @property
    def yuexiu_dir(self) -> Path:
        return self.shared_dir / "data" / "yuexiu"

    def secret(self) -> str:
        """JWT signing secret: from the environment, else one kept in the data dir."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.home / "jwt-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        self.jwt_secret = path.read_text().strip()
        return self.jwt_secret


@lru_cache
def get_settings() -> Settings:
    return Settings()
