"""The division gazetteer (China's administrative divisions from the jionlp package's table) and the
gazetteer's storage: what the table yields, that training with it puts it into the model, and that
a saved gazetteer reads back to the same entries."""

from __future__ import annotations

import numpy as np
import pytest

from gridserver.address.parser.features import TYPES, Lexicon, tokenize


@pytest.fixture(scope="module")
def divisions():
    import importlib.util

    if importlib.util.find_spec("jionlp") is None:
        pytest.skip("the division table comes with the optional train extra (jionlp)")
    from gridserver.address.parser.gazetteer import admin_divisions

    return admin_divisions()


def test_division_table_levels(divisions):
    got = {}
    for name, typ in divisions:
        got.setdefault(name, set()).add(typ)
    assert got["浙江省"] == {"prov"} and got["浙江"] == {"prov"}  # full and short names
    assert "city" in got["杭州市"] and "city" in got["杭州"]
    assert "district" in got["余杭区"]
    assert "district" in got["江干区"]  # merged away in 2021, still written in addresses (change list)
    assert "town" in got["九堡镇"] and "town" in got["九堡"]  # a town also without its 镇
    assert "town" in got["闲林街道"]
    assert "community" in got["华亭村"]
    assert "devzone" in got["嘉定工业区"] and "town" not in got["嘉定工业区"]  # a town-level zone
    assert all(len(name) >= 2 for name, _ in divisions)
    assert divisions == sorted(set(divisions))  # deterministic order, no repeats
    assert {t for _, t in divisions} == {"prov", "city", "district", "town", "community", "devzone"}
    assert len([1 for _, t in divisions if t == "district"]) > 2800  # the whole country, not one province


def test_division_entries_skip_unknown_characters(divisions):
    from gridserver.address.parser.train import division_entries

    vocab = {"浙": 2, "江": 3, "省": 4, "杭": 5, "州": 6, "市": 7}
    entries = division_entries(lambda toks: [vocab.get(t, 1) for t in toks])
    # only names made entirely of known characters can ever match, so only those are kept
    got = {(tuple(ids), TYPES[t]) for ids, t in entries}
    assert {((2, 3), "prov"), ((2, 3, 4), "prov"), ((5, 6), "city"), ((5, 6, 7), "city")} <= got
    assert all(1 not in ids for ids, _ in got) and len(got) < 20  # (江州, 江市 ... exist too)


def test_lexicon_reads_back_its_entries():
    rng = np.random.default_rng(3)
    entries = [(list(rng.integers(2, 50, size=int(rng.integers(2, 8)))), int(rng.integers(0, len(TYPES))))
               for _ in range(300)]
    lex = Lexicon.build(entries)
    again = Lexicon(lex.hashes.copy(), lex.lengths.copy(), lex.masks.copy())
    ids = np.array([list(entries[0][0]) + [1, 1, 1]], np.int64)
    for a, b in zip(lex.match(ids), again.match(ids)):
        assert np.array_equal(a, b)
    assert np.array_equal(lex.hashes, again.hashes) and np.array_equal(lex.masks, again.masks)
    assert np.array_equal(lex.lengths, again.lengths)
    assert sorted(lex.lengths.tolist()) == sorted(len(e) for e, _ in {(tuple(i), 0) for i, _ in entries})
    # the first entry is found where it stands: its type bit begins at token 0 and ends at its last token
    first, t = entries[0]
    begin, end = lex.match(ids, bits_only=True)[:2]
    assert begin[0, 0] >> t & 1 and end[0, len(first) - 1] >> t & 1


def test_training_with_division_gazetteer(tmp_path, divisions):
    """``gazetteer: true`` puts the division names into the saved model's gazetteer, where a name that
    the (tiny) training corpus never had is matched with its level; without it the name is unknown."""
    pytest.importorskip("torch", reason="training needs the optional torch extra")
    from gridserver.address.parser.corpus import read_corpus
    from gridserver.address.parser.model import AddressModel
    from gridserver.address.parser.train import train
    from address_data import small_corpus

    small = small_corpus(tmp_path)
    params = {"epochs": 1, "hidden": 8, "seeds": [1], "crf_weight": 0.0, "dict": False, "pretrained": False}
    train(small, tmp_path / "plain.npz", params)
    _, report = train(small, tmp_path / "gaz.npz", {**params, "gazetteer": True})
    with_gaz = AddressModel.load(tmp_path / "gaz.npz")
    without = AddressModel.load(tmp_path / "plain.npz")
    assert report.params["gazetteer"] is True
    lex_g, lex_p = with_gaz.featurizer.lexicon, without.featurizer.lexicon
    assert len(lex_g.hashes) > len(lex_p.hashes) + 1000
    # a district every tiny corpus has the characters of: 浙江省 (prov) is in the first 100 addresses
    feat = with_gaz.featurizer
    toks = tokenize("浙江省")[0]
    ids = np.array([feat.encode(toks)], np.int64)
    begin, end = lex_g.match(ids, bits_only=True)[:2]
    assert begin[0, 0] >> TYPES.index("prov") & 1 and end[0, 2] >> TYPES.index("prov") & 1
    # a district the tiny corpus never mentions, made of characters it has: known with the table only
    text = "\n".join(e.text for e in read_corpus(small / "train.txt"))
    unseen = [n for n, t in divisions if t == "district" and len(n) == 3 and n not in text
              and 1 not in feat.encode(tokenize(n)[0])]
    assert unseen
    probe = np.array([feat.encode(tokenize(unseen[0])[0])], np.int64)
    bit = TYPES.index("district")
    assert lex_g.match(probe, bits_only=True)[0][0, 0] >> bit & 1
    assert not lex_p.match(probe, bits_only=True)[0][0, 0] >> bit & 1
