"""The app's OpenAPI document and every CLI command's --help: the surfaces users read first."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from gridserver.cli import app

EXPECTED_PATHS = [
    "/api/v1/locate", "/api/v1/areas/{code}", "/api/v1/areas", "/api/v1/topology", "/api/v1/areas/import",
    "/api/v1/auth/token", "/api/v1/users", "/api/v1/incidents", "/api/v1/incidents/{incident_id}",
    "/api/v1/address/parse", "/api/v1/address/geocode", "/api/v1/address/reverse", "/api/v1/address/review",
    "/tiles/{layer}/{z}/{x}/{y}.mvt",
]


def test_openapi_lists_every_domain(http):
    r = http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    missing = [p for p in EXPECTED_PATHS if p not in paths]
    assert not missing, missing
    assert http.get("/docs").status_code == 200
    assert http.get("/healthz").json()["status"] == "ok"


def test_every_documented_operation_has_a_chinese_summary(http):
    """UI text is zh-CN first: the API document's operations too (summary or description in Chinese)."""
    doc = http.get("/openapi.json").json()
    lacking = [f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m, op in ops.items()
               if not any("\u4e00" <= ch <= "\u9fff" for ch in op.get("summary", "") + op.get("description", ""))]
    assert not lacking, lacking


def _commands(cmd, prefix=()):
    """Every command path of the click tree under ``cmd``."""
    yield prefix
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, prefix + (name,))


ALL = sorted(_commands(get_command(app)))


def test_cli_has_the_domain_commands():
    flat = {" ".join(c) for c in ALL}
    for wanted in ["db start", "db stop", "db status", "db upgrade", "demo", "serve", "import areas",
                   "import addresses", "check topology", "users add", "map export", "address parse",
                   "address train", "address review"]:
        assert wanted in flat, wanted


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "gridserver")
def test_every_command_has_help(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
