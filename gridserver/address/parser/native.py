"""The parser's inference loops compiled from ``native.c`` with the system C compiler, called via ctypes.

Why: numba (and LLVM with it) cost ~150 MB resident and ~0.7 s at start-up, and a single address
paid ~2 ms in numpy per-call overheads (a few hundred small array operations). The C file holds the
gazetteer match, the CRF's feature keys and scores, the LSTM recurrence and the Viterbi; numpy keeps
the two dense matmuls (upper-layer inputs, output layer) that BLAS does best.

Compiled once per source version (``cc -O2``) into ``__pycache__`` next to this file (or the user
cache dir when that is read-only): ~1 s on the first use after an install, a ~1 ms ``dlopen`` after.
When no C compiler is available :func:`library` returns None, a warning is logged and the tagger
runs its numpy path (same tags, slower). ``GRIDSERVER_PARSER_NATIVE=0`` forces the numpy path.
"""

from __future__ import annotations

import ctypes as C
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native.c")
# The parts of -ffast-math the loops need, spelled out: -ffast-math itself (or -funsafe-math-optimizations,
# -Ofast) makes GCC < 13 link crtfastmath.o into the library, whose constructor sets flush-to-zero /
# denormals-are-zero for the whole process on load — every later float computation (geometry included)
# would then lose subnormals. tests/address/test_parser_native.py guards this.
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-ffinite-math-only",
         "-fno-signed-zeros", "-fassociative-math", "-freciprocal-math", "-shared", "-fPIC"]
_lock = threading.Lock()
_lib: list = []  # [CDLL or None] once decided

MAXLEX = 12
KEEP_TOKENS = 512  # scratch buffers up to this many tokens stay with their thread
_p = C.c_void_p
_i = C.c_int64


def _cache_dirs() -> list[Path]:
    dirs = [SOURCE.parent / "__pycache__"]
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    dirs.append(Path(xdg) / "gridserver")
    dirs.append(Path(tempfile.gettempdir()) / f"gridserver-{os.getuid() if hasattr(os, 'getuid') else 'u'}")
    return dirs


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


def _trusted(path: Path) -> bool:
    """Only load code from a place nobody else can write to: owned by us, not group/world-writable."""
    try:
        st = path.stat()
    except OSError:
        return False
    if not hasattr(os, "getuid"):
        return True
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def _build(cc: str) -> Path | None:
    src = SOURCE.read_bytes()
    # -march=native: the file is only valid on this kind of CPU, so its flags are part of the name
    tag = hashlib.sha256(src + " ".join(FLAGS).encode() + platform.machine().encode()
                         + _cpu_flags().encode()).hexdigest()[:16]
    name = f"_address_native_{tag}.so"
    for d in _cache_dirs():
        if (d / name).exists() and _trusted(d) and _trusted(d / name):
            return d / name
    for d in _cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            if not _trusted(d):
                continue
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=d)
            os.close(fd)
        except OSError:
            continue
        try:
            subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], check=True, capture_output=True, timeout=120)
            os.replace(tmp, d / name)  # atomic: concurrent builders never load a half-written file
            return d / name
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            log.warning("compiling %s failed (%s) %s", SOURCE.name, exc, detail.decode(errors="replace")[-500:])
            Path(tmp).unlink(missing_ok=True)
            return None
    return None


def library():
    """The compiled library (ctypes.CDLL), or None when it cannot be built or is switched off."""
    if not _lib:
        with _lock:
            if not _lib:
                lib = None
                if os.environ.get("GRIDSERVER_PARSER_NATIVE", "1") != "0":
                    cc = _compiler()
                    path = _build(cc) if cc else None
                    if path is not None:
                        lib = C.CDLL(str(path))
                        _declare(lib)
                    else:
                        log.warning("no C compiler for the address parser's kernels: using the slower numpy path")
                _lib.append(lib)
    return _lib[0]


def _declare(lib) -> None:
    lib.lex_match.argtypes = [_p, _p, _i, _i, _i] + [_p] * 6
    lib.crf_keys.argtypes = [_p, _p, _p, _i, _i] + [_p] * 6 + [_i, _p]
    lib.crf_emit.argtypes = [_p, _p, _i, _p]
    lib.lstm_input.argtypes = [_p, _i, _p, _i, _i] + [_p] * 7
    lib.lstm_dir.argtypes = [_p, _p, _i, _i, _p, _i, _i, _p, _i, _i]
    lib.viterbi.argtypes = [_p, _p, _i, _i, _i, _p, _p, _p, _p, _p, _i, _p, _p, _i, _p]
    for f in (lib.lex_match, lib.crf_keys, lib.crf_emit, lib.lstm_input, lib.lstm_dir, lib.viterbi):
        f.restype = None


def _ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


class _Lex(C.Structure):
    _fields_ = [("hashes", _p), ("masks", _p), ("off", _i * (MAXLEX + 2)), ("filter", _p), ("bits", _i)]


class _Feat(C.Structure):
    _fields_ = [("V", _i), ("class_of", _p), ("bi", _p), ("n_bi", _i), ("tri", _p), ("n_tri", _i),
                ("groups", _p), ("n_groups", _i), ("bucket", _p), ("n_bucket", _i)]


class _Crf(C.Structure):
    _fields_ = [("n_templates", _i), ("n_labels", _i), ("n_gcols", _i), ("gcol", _p), ("glimit", _p),
                ("ggroup", _p), ("gstride", _p), ("n_groups", _i), ("goffset", _p), ("n_single", _i),
                ("stpl", _p), ("soff", _p), ("slen", _p), ("sdense", _p), ("w_offset", _i), ("table", _p)]


class _Input(C.Structure):
    _fields_ = [("V", _i), ("H", _i), ("n_bigrams", _i), ("bigram_keys", _p), ("left", _p * 2),
                ("right", _p * 2), ("wlex", _p * 2), ("wdict", _p * 2), ("n_lex", _i), ("n_dict", _i)]


def _c64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


class NativeLexicon:
    """A :class:`.features.Lexicon` laid out for ``lex_match`` (arrays kept alive here)."""

    def __init__(self, lexicon):
        self.lexicon = lexicon  # its sorted arrays and packed filter are read in place
        self.s = _Lex(_ptr(lexicon.sorted_hashes), _ptr(lexicon.sorted_masks),
                      (_i * (MAXLEX + 2))(*lexicon.offsets.tolist()), _ptr(lexicon.filter), lexicon._bits)
        self.ref = C.byref(self.s)


class _Work:
    """Scratch buffers for ``cap`` tokens (one set per thread), with their raw pointers."""

    def __init__(self, cap: int, H: int, T: int, L: int):
        self.cap, self.L = cap, L
        i32 = lambda: np.zeros(cap, np.int32)  # noqa: E731
        i64 = lambda k=1: np.zeros(cap * k, np.int64)  # noqa: E731
        f32 = lambda k: np.zeros(cap * k, np.float32)  # noqa: E731
        self.match = [i32(), i32(), i32(), i64(), i64(), i64()]
        self.dmatch = [i32(), i32(), i32()]
        self.keys = i64(max(T, 1))
        self.x = f32(4 * H)
        self.out = [f32(2 * H), f32(2 * H)]
        self.e, self.crf = f32(L), f32(L)
        self.p_match = [_ptr(a) for a in self.match]
        self.p_dmatch = [_ptr(a) for a in self.dmatch] + [None, None, None]
        self.p_keys, self.p_x, self.p_e, self.p_crf = _ptr(self.keys), _ptr(self.x), _ptr(self.e), _ptr(self.crf)
        self.p_out = [_ptr(a) for a in self.out]


class NativeTagger:
    """Runs a :class:`.neural.NeuralTagger` (one member, CRF part optional) through ``native.c``.

    Built by :meth:`create`, which returns None when the library is missing or the model has parts
    this path does not cover (ensembles, repetition bits, direct n-gram scores): the caller then
    keeps the numpy path.
    """

    @classmethod
    def create(cls, nn) -> "NativeTagger | None":
        lib = library()
        if lib is None or len(nn.members) != 1:
            return None
        m = nn.members[0]
        if m.proj_rep is not None or m.direct is not None or len(m.upper) > 3:
            return None
        if nn.crf is not None and any(kind != "dense" and len(data[0]) for kind, data in nn.crf._lookups):
            return None
        return cls(lib, nn)

    def __init__(self, lib, nn):
        self.lib, self.nn = lib, nn
        m = nn.members[0]
        self.H = H = m.H
        self.lex = NativeLexicon(nn.lexicon)
        self.dic = NativeLexicon(nn.dictionary) if nn.dictionary is not None else None
        # first-layer input tables (arrays are the member's own: no copies)
        self._keep = [m.tables[0][0], m.tables[0][1], m.tables[1][0], m.tables[1][1]]
        self.bigram_keys = _c64(nn.bigram_keys)
        wl = [np.ascontiguousarray(m.W_lex[:, d * 4 * H:(d + 1) * 4 * H]) for d in (0, 1)]
        wd = [np.ascontiguousarray(m.W_dict[:, d * 4 * H:(d + 1) * 4 * H]) for d in (0, 1)] \
            if m.W_dict is not None else [None, None]
        self._keep += wl + [w for w in wd if w is not None]
        from gridserver.address.parser.features import TYPES
        from gridserver.address.parser.neural import DICT_CLASSES

        self.inp = _Input(nn.V, H, len(nn.bigram_keys), _ptr(self.bigram_keys),
                          (_p * 2)(_ptr(m.tables[0][0]), _ptr(m.tables[1][0])),
                          (_p * 2)(_ptr(m.tables[0][1]), _ptr(m.tables[1][1])),
                          (_p * 2)(_ptr(wl[0]), _ptr(wl[1])),
                          (_p * 2)(*(_ptr(w) if w is not None else None for w in wd)),
                          len(TYPES), len(DICT_CLASSES))
        self.whh = [np.ascontiguousarray(m.w_hh_f), np.ascontiguousarray(m.w_hh_b)]
        # upper layers: (input -> gates of both directions, bias) for one matmul, recurrent weights per direction
        self.upper = []
        for w_f, w_b in m.upper:
            d_in = w_f.shape[0] - H - 1
            self.upper.append(tuple([np.ascontiguousarray(w[:d_in]) for w in (w_f, w_b)]) +  # input -> gates
                              ([w[-1].copy() for w in (w_f, w_b)],  # bias
                               [np.ascontiguousarray(w[d_in:d_in + H]) for w in (w_f, w_b)]))  # recurrent
        self.out_w, self.out_b = m.out_w, m.out_b
        # Viterbi
        self.trans = np.ascontiguousarray(nn.trans, dtype=np.float32)
        self.trans_t = np.ascontiguousarray(nn.trans.T, dtype=np.float32)
        self.start, self.end = np.ascontiguousarray(nn.start), np.ascontiguousarray(nn.end)
        self.b_cols, self.i_cols, self.i_from_b = _c64(nn._b_cols), _c64(nn._i_cols), _c64(nn._i_from_b)
        self.crf = self.feat_ref = self.crf_ref = None
        self.T = 0
        if nn.crf is not None:
            self._init_crf(nn)
        # raw pointers of the constant arrays, taken once (a pointer lookup per call costs ~1 us)
        self.inp_ref = C.byref(self.inp)
        self.p_whh = [_ptr(w) for w in self.whh]
        self.p_upper = [[_ptr(w) for w in whh] for _, _, _, whh in self.upper]
        self.p_viterbi = [_ptr(a) for a in (self.trans_t, self.trans, self.start, self.end, self.b_cols, self.i_cols,
                                            self.i_from_b)]
        self._local = threading.local()

    def _init_crf(self, nn) -> None:
        from gridserver.address.parser.features import _BUCKET

        f, crf = nn.featurizer, nn.crf
        # a template without any weight is "sparse" with no keys: the same as a dense table of one
        # absent row
        dense = [data if kind == "dense" else np.zeros(1, np.int64) for kind, data in crf._lookups]
        bi, tri = nn.ngrams
        self.feat_arrays = (_c64(f.class_of), _c64(bi), _c64(tri),
                            np.ascontiguousarray(f.group_matrix, dtype=np.uint8), _c64(_BUCKET))
        co, bi, tri, gm, bucket = self.feat_arrays
        self.feat = _Feat(f.V, _ptr(co), _ptr(bi), len(bi), _ptr(tri), len(tri), _ptr(gm), gm.shape[1],
                          _ptr(bucket), len(bucket))
        self.T = len(f.template_names)
        # grouped templates: each column's group and integer stride (the float strides are exact integers)
        col_group = np.argmax(crf._group_strides != 0, axis=1) if len(crf._group_cols) else np.zeros(0, np.int64)
        stride = crf._group_strides[np.arange(len(col_group)), col_group]
        # a group's last member has stride 1, so every column has a non-zero stride in its own group
        self.crf_arrays = dict(
            gcol=_c64(crf._group_cols), glimit=_c64(crf._group_limits), ggroup=_c64(col_group),
            gstride=_c64(np.rint(stride)), goffset=_c64(crf._group_offsets),
            stpl=_c64(crf._single),
            soff=_c64(np.cumsum([0] + [len(dense[t]) for t in crf._single])[:-1]),
            slen=_c64([len(dense[t]) for t in crf._single]),
            sdense=_c64(np.concatenate([dense[t] for t in crf._single]) if crf._single else [0]),
            table=np.ascontiguousarray(crf._table, dtype=np.float32))
        a = self.crf_arrays
        self.crf = _Crf(self.T, crf._table.shape[1], len(a["gcol"]), _ptr(a["gcol"]), _ptr(a["glimit"]),
                        _ptr(a["ggroup"]), _ptr(a["gstride"]), len(crf._groups), _ptr(a["goffset"]),
                        len(crf._single), _ptr(a["stpl"]), _ptr(a["soff"]), _ptr(a["slen"]), _ptr(a["sdense"]),
                        crf._w_offset, _ptr(a["table"]))
        self.crf_weight = np.float32(nn.crf_weight)
        self.feat_ref, self.crf_ref = C.byref(self.feat), C.byref(self.crf)

    # --- the steps, each testable against its numpy reference ----------------------------------------
    def match(self, lex: NativeLexicon, ids: np.ndarray, full: bool = True):
        b, n = ids.shape
        begin, end, inside = (np.empty((b, n), np.int32) for _ in range(3))
        if full:
            longest, starts, ends = (np.empty((b, n), np.int64) for _ in range(3))
            extra = (_ptr(longest), _ptr(starts), _ptr(ends))
        else:
            longest = starts = ends = None
            extra = (None, None, None)
        self.lib.lex_match(lex.ref, _ptr(ids), b, n, int(full), _ptr(begin), _ptr(end), _ptr(inside), *extra)
        return begin, end, inside, longest, starts, ends

    def keys(self, ids: np.ndarray, lengths: np.ndarray, match) -> np.ndarray:
        b, n = ids.shape
        keys = np.empty((b, n, self.T), np.int64)
        self.lib.crf_keys(C.byref(self.feat), _ptr(ids), _ptr(lengths), b, n, *(_ptr(a) for a in match), self.T,
                          _ptr(keys))
        return keys

    def crf_emissions(self, keys: np.ndarray) -> np.ndarray:
        b, n, _ = keys.shape
        E = np.empty((b, n, self.crf.n_labels), np.float32)
        self.lib.crf_emit(C.byref(self.crf), _ptr(keys), b * n, _ptr(E))
        return E

    def _work(self, m: int) -> "_Work":
        """This thread's scratch buffers, for at least ``m`` tokens. Buffers for big batches (more than
        :data:`KEEP_TOKENS`) are not kept: a server thread that once parsed a batch holds ~0.5 MB, not 40."""
        w = getattr(self._local, "work", None)
        if w is None or w.cap < m:
            w = _Work(max(m, 256), self.H, self.T if self.crf is not None else 0, len(self.trans))
            if m <= KEEP_TOKENS:
                self._local.work = w
        return w

    def emissions(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Label scores (B, n, L) like :meth:`.NeuralTagger.emissions` (rows in any order); a new array."""
        ids, lengths = _c64(ids), _c64(lengths)
        return self._emissions(ids, lengths, self._work(ids.size)).copy()

    def _emissions(self, ids: np.ndarray, lengths: np.ndarray, w: "_Work") -> np.ndarray:
        """The emissions in ``w``'s buffer (a view, valid until the next call in this thread)."""
        b, n = ids.shape
        m, H, lib = b * n, self.H, self.lib
        pid, plen = _ptr(ids), _ptr(lengths)
        full = self.crf is not None
        lib.lex_match(self.lex.ref, pid, b, n, int(full), *w.p_match)
        if self.dic is not None:
            lib.lex_match(self.dic.ref, pid, b, n, 0, *w.p_dmatch)
            pd = w.p_dmatch[:3]
        else:
            pd = w.p_match[:3]
        for d in (0, 1):
            lib.lstm_input(self.inp_ref, d, pid, b, n, *w.p_match[:3], *pd, w.p_x)
            lib.lstm_dir(w.p_x, plen, b, n, self.p_whh[d], H, d, w.p_out[0], 2 * H, d * H)
        x = w.x[:m * 4 * H].reshape(m, 4 * H)
        for k, (win_f, win_b, bias, whh) in enumerate(self.upper):
            below = w.out[k % 2][:m * 2 * H].reshape(m, 2 * H)
            for d, win in ((0, win_f), (1, win_b)):
                np.matmul(below, win, out=x)
                x += bias[d]
                lib.lstm_dir(w.p_x, plen, b, n, self.p_upper[k][d], H, d, w.p_out[(k + 1) % 2], 2 * H, d * H)
        top = w.out[len(self.upper) % 2][:m * 2 * H].reshape(m, 2 * H)
        E = w.e[:m * w.L].reshape(m, w.L)
        np.matmul(top, self.out_w, out=E)
        E += self.out_b
        if full:
            lib.crf_keys(self.feat_ref, pid, plen, b, n, *w.p_match, self.T, w.p_keys)
            lib.crf_emit(self.crf_ref, w.p_keys, m, w.p_crf)
            Cs = w.crf[:m * w.L].reshape(m, w.L)
            Cs *= self.crf_weight
            E += Cs
        return E.reshape(b, n, w.L)

    def tag(self, ids: np.ndarray, lengths: np.ndarray, work: "_Work | None" = None) -> np.ndarray:
        """Best label paths (B, n) for a padded id matrix: emissions and Viterbi in ``work`` (default:
        this thread's buffers; pass :meth:`_work` of the largest batch to reuse one set over many)."""
        ids, lengths = _c64(ids), _c64(lengths)
        b, n = ids.shape
        w = work if work is not None and work.cap >= ids.size else self._work(ids.size)
        self._emissions(ids, lengths, w)
        path = np.empty((b, n), np.int64)
        self.lib.viterbi(w.p_e, _ptr(lengths), b, n, w.L, *self.p_viterbi[:4], self.p_viterbi[4], len(self.b_cols),
                         self.p_viterbi[5], self.p_viterbi[6], len(self.i_cols), _ptr(path))
        return path

    def viterbi(self, E: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        E = np.ascontiguousarray(E, dtype=np.float32)
        lengths = _c64(lengths)
        b, n, L = E.shape
        path = np.empty((b, n), np.int64)
        self.lib.viterbi(_ptr(E), _ptr(lengths), b, n, L, _ptr(self.trans_t), _ptr(self.trans), _ptr(self.start),
                         _ptr(self.end), _ptr(self.b_cols), len(self.b_cols), _ptr(self.i_cols), _ptr(self.i_from_b),
                         len(self.i_cols), _ptr(path))
        return path
