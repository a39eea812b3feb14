"""Shared data for the address-base tests: a small real-road base inside the small city's box.

Imported by the test modules (not a conftest, so it does not collide with other address tests).
The base is built once per test session and cached here; every module's fixture returns the same.
"""

from __future__ import annotations

import pytest

SEED = 4242
#: Inside tests/conftest.py's small city (113.25–113.29E, 23.12–23.15N): every address gets a grid.
TEST_BBOX = (113.262, 23.125, 113.282, 23.145)
_cache: dict = {}


@pytest.fixture(scope="session")
def address_base(engine, small_city, tmp_path_factory):
    """{"base": DemoBase, "ids": key → id, "dir": scratch dir} — the loaded test base."""
    if "base" not in _cache:
        from gridserver.address.demo_data import generate_base, load_base

        base = generate_base(SEED, bbox=TEST_BBOX, max_houses_per_side=8)
        with engine.begin() as conn:
            ids = load_base(conn, base, source="测试标准地址库")
        _cache["base"] = {"base": base, "ids": ids, "dir": tmp_path_factory.mktemp("address")}
    return _cache["base"]


def small_corpus(tmp_path):
    """The first 100 addresses of train.txt as train and the next 20 as dev, for tiny training runs."""
    from gridserver.address.parser.corpus import corpus_dir

    src = corpus_dir() / "train.txt"
    if not src.exists():
        pytest.skip(f"{src} not present (shared corpus)")
    blocks = src.read_text(encoding="utf-8").split("\n\n")[:120]
    small = tmp_path / "corpus"
    small.mkdir()
    (small / "train.txt").write_text("\n\n".join(blocks[:100]) + "\n", encoding="utf-8")
    (small / "dev.txt").write_text("\n\n".join(blocks[100:]) + "\n", encoding="utf-8")
    return small
