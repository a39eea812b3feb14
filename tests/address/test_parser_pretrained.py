"""Pre-trained character vectors for the address tagger (:mod:`gridserver.address.parser.pretrained`):
reading them from LAC's source archive, and training with them. No download here: the archive is a
small one written the same way, and training reads a few made-up vectors."""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile

import numpy as np
import pytest

from gridserver.address.parser import pretrained as PT


def _paddle_param(table: np.ndarray) -> bytes:
    """A PaddlePaddle parameter file as LAC's: version, LoD level 0, tensor version, description, data."""
    desc = b"\x08\x05\x10" + bytes([table.shape[0] & 0x7F | 0x80, table.shape[0] >> 7]) + b"\x10" + bytes([table.shape[1]])
    return (struct.pack("<I", 0) + struct.pack("<Q", 0) + struct.pack("<I", 0) + struct.pack("<i", len(desc)) + desc
            + table.astype("<f4").tobytes())


def _fake_archive(path, words: list[str], table: np.ndarray) -> None:
    base = f"LAC-{PT.LAC_VERSION}/LAC/lac_model/"
    files = {base + "conf/word.dic": "".join(f"{i}\t{w}\n" for i, w in enumerate(words)).encode(),
             base + "model/word_emb": _paddle_param(table)}
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_vectors_read_from_the_archive(tmp_path, monkeypatch):
    words = [" ", "!", "张", "村", "路", "中国", "7"]
    table = np.random.default_rng(3).normal(size=(len(words), PT.DIM)).astype(np.float32)
    _fake_archive(tmp_path / PT.LAC_SDIST, words, table)
    monkeypatch.setattr(PT, "LAC_SHA256", hashlib.sha256((tmp_path / PT.LAC_SDIST).read_bytes()).hexdigest())
    vec = PT.lac_char_vectors(tmp_path)
    assert set(vec) == {" ", "!", "张", "村", "路", "7"}  # single characters only: the word 中国 is left out
    assert np.array_equal(vec["村"], table[3]) and np.array_equal(vec["7"], table[6])
    # the tagger's vocabulary: padding, unknown, a shape class, two characters; one LAC does not know
    vocab = ["<PAD>", "<UNK>", "<NUM>", "路", "镇"]
    assert PT.extra_chars(vocab, vec) == ["张", "村"]  # Chinese characters only, sorted
    assert PT.extra_chars(vocab, vec, limit=1, frequency={"村": 5, "张": 3}) == ["村"]  # the most common first
    P = PT.char_matrix(vocab + ["张", "村"], vec)
    assert P.shape == (7, PT.DIM) and not P[:3].any() and not P[4].any()  # no vector: zeros
    nz = P[[3, 5, 6]]
    assert abs(nz.std() - 1) < 1e-5  # scaled to unit spread
    assert np.allclose(P[5] / P[6], table[2] / table[3], rtol=1e-4)  # directions kept


def test_archive_with_another_hash_is_refused(tmp_path):
    _fake_archive(tmp_path / PT.LAC_SDIST, ["张"], np.ones((1, PT.DIM), np.float32))
    with pytest.raises(SystemExit, match="SHA-256"):
        PT.lac_char_vectors(tmp_path)


def test_training_with_pretrained_vectors(tmp_path, monkeypatch):
    """``pretrained: true``: characters the vectors know and training lacks join the vocabulary (so at
    run time they are no longer unknown), the saved embedding carries the vectors, and it parses."""
    pytest.importorskip("torch", reason="training needs the optional torch extra")
    from gridserver.address.parser import parse
    from gridserver.address.parser.model import AddressModel
    from gridserver.address.parser.train import train
    from address_data import small_corpus

    small = small_corpus(tmp_path)
    rng = np.random.default_rng(5)
    chars = "浙江省杭州市西湖区文三路号镇村鬲彧"  # the last two are not in the tiny corpus
    vectors = {c: rng.normal(size=PT.DIM).astype(np.float32) for c in chars}
    monkeypatch.setattr(PT, "lac_char_vectors", lambda cache=None: vectors)
    params = {"epochs": 1, "hidden": 8, "seeds": [1], "crf_weight": 0.0, "dict": False}
    train(small, tmp_path / "plain.npz", {**params, "pretrained": False})
    trained, report = train(small, tmp_path / "pre.npz", {**params, "pretrained": True})
    plain, pre = AddressModel.load(tmp_path / "plain.npz"), AddressModel.load(tmp_path / "pre.npz")
    assert report.params["pretrained"] is True
    assert pre.featurizer.V == plain.featurizer.V + 2
    for c in "鬲彧":
        assert plain.featurizer.encode([c]) == [1]  # unknown without the vectors
        assert pre.featurizer.encode([c])[0] >= plain.featurizer.V
    emb = trained.members[0]["emb_c"].astype(np.float32)
    assert emb.shape[1] == PT.DIM + params.get("emb_c", 100)
    P = PT.char_matrix(pre.featurizer.vocab_list, vectors)
    assert np.allclose(emb[:, :PT.DIM], P, atol=2e-3)  # stored as float16
    text = "浙江省杭州市西湖区文三路123号"
    comps = parse(text, pre)
    assert "".join(c.text for c in comps) in text and all(text[c.start:c.end] == c.text for c in comps)


def test_character_frequency_from_the_word_list():
    pytest.importorskip("jieba", reason="the word list comes with the optional train extra")
    freq = PT.char_frequency()
    assert len(freq) > 5000
    assert freq["路"] > freq["镇"] > freq.get("彧", 0)  # common, less common, rare
