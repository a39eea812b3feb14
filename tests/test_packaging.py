"""The application image builds the package from what its Dockerfile copies (no Docker needed to check)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def app_stage_copies() -> list[str]:
    """The build-context paths the Dockerfile's last stage copies (COPY lines without --from)."""
    stages = (ROOT / "docker" / "Dockerfile").read_text().split("\nFROM ")
    paths = []
    for line in stages[-1].splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            paths += words[1:-1]
    return paths


def test_image_copies_what_the_package_build_reads(tmp_path):
    """pyproject names a readme and licence files; a COPY that misses one fails `pip install` in the image."""
    copies = app_stage_copies()
    assert {"pyproject.toml", "README.md", "LICENSE", "NOTICE", "gridserver/"} <= set(copies)
    for p in copies:
        src = ROOT / p
        if src.is_dir():
            shutil.copytree(src, tmp_path / p, ignore=shutil.ignore_patterns("__pycache__", "dist"))
        else:
            shutil.copy(src, tmp_path / p)
    out = subprocess.run([sys.executable, "-c", "import os; from setuptools import build_meta as b; os.mkdir('meta'); "
                          "print(b.prepare_metadata_for_build_wheel('meta'))"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    meta = (tmp_path / "meta" / out.stdout.split()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in meta and "License-File: NOTICE" in meta
