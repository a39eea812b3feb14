/* The address tagger's inference loops in plain C (see native.py, which compiles this file with the
 * system C compiler on first use and calls it through ctypes; no Python API is used here).
 *
 * Every function works on one padded batch of token ids (b rows x n columns, row-major, PAD = 0
 * past each row's length) and mirrors a numpy reference in features.py / neural.py / model.py:
 *   lex_match   Lexicon.match          (rolling hashes, bitmap filter, binary search)
 *   crf_keys    Featurizer.keys        (the CRF's 83 templates, compact n-gram keys)
 *   crf_emit    LinearCRF.emissions    (dense lookups, grouped templates, rows summed in order)
 *   lstm_input  first-layer inputs     (char + bigram tables, gazetteer / dictionary bit rows)
 *   lstm_dir    one LSTM direction     (the recurrence, pre-halved sigmoid gates i f o g)
 *   viterbi     BIO-constrained Viterbi (first maximum on ties, like numpy's argmax)
 * Integer outputs (keys, matches) are identical to numpy's; float outputs agree to rounding.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAXLEX 12
#define NTYPES 21
#define WINDOW 3
#define NCLASSES 6
#define NONE_BUCKET 10
#define HASH_MUL 1000003ULL

typedef struct {
    const uint64_t *hashes; /* entries sorted by (length, hash) */
    const int32_t *masks;
    int64_t off[MAXLEX + 2]; /* entries of length m: [off[m], off[m + 1]) */
    const uint8_t *filter;   /* 1 << bits flags, 8 per byte (numpy packbits, little bit order) */
    int64_t bits;
} Lex;

static int64_t find_u64(const uint64_t *a, int64_t lo, int64_t hi, uint64_t key) {
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < key) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* 1-based place of key in the sorted table, 0 if absent (features.place) */
static int64_t place(const int64_t *a, int64_t len, int64_t key) {
    int64_t lo = 0, hi = len;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < key) lo = mid + 1; else hi = mid;
    }
    return (lo < len && a[lo] == key) ? lo + 1 : 0;
}

void lex_match(const Lex *L, const int64_t *ids, int64_t b, int64_t n, int64_t full, int32_t *begin,
               int32_t *end, int32_t *inside, int64_t *longest, int64_t *starts_here, int64_t *ends_here) {
    uint64_t *h = (uint64_t *)malloc(sizeof(uint64_t) * (n + 1));
    int32_t *found = (int32_t *)malloc(sizeof(int32_t) * (n + 1));
    for (int64_t r = 0; r < b; r++) {
        const int64_t *x = ids + r * n;
        int32_t *bg = begin + r * n, *en = end + r * n, *in = inside + r * n;
        memset(bg, 0, sizeof(int32_t) * n);
        memset(en, 0, sizeof(int32_t) * n);
        memset(in, 0, sizeof(int32_t) * n);
        int64_t *lg = 0, *sh = 0, *eh = 0;
        if (full) {
            lg = longest + r * n; sh = starts_here + r * n; eh = ends_here + r * n;
            for (int64_t i = 0; i < n; i++) lg[i] = sh[i] = eh[i] = -1;
        }
        for (int64_t i = 0; i < n; i++) h[i] = (uint64_t)x[i];
        int64_t maxm = n < MAXLEX ? n : MAXLEX;
        for (int64_t m = 2; m <= maxm; m++) {
            int64_t width = n - m + 1;
            for (int64_t s = 0; s < width; s++) h[s] = h[s] * HASH_MUL + (uint64_t)x[s + m - 1];
            int64_t lo = L->off[m], hi = L->off[m + 1];
            if (lo == hi) continue;
            int any = 0;
            for (int64_t s = 0; s < width; s++) {
                found[s] = 0;
                uint64_t slot = ((h[s] + (uint64_t)m) * 0x9E3779B97F4A7C15ULL) >> (64 - L->bits);
                if (!((L->filter[slot >> 3] >> (slot & 7)) & 1)) continue;
                int64_t p = find_u64(L->hashes, lo, hi, h[s]);
                if (p < hi && L->hashes[p] == h[s]) { found[s] = L->masks[p]; any |= found[s] != 0; }
            }
            if (!any) continue;
            for (int64_t s = 0; s < width; s++) {
                int32_t f = found[s];
                if (!f) continue;
                bg[s] |= f;
                en[s + m - 1] |= f;
                for (int64_t k = 1; k < m - 1; k++) in[s + k] |= f;
            }
            if (!full) continue;
            for (int64_t s = 0; s < width; s++) {
                if (!found[s]) continue;
                int64_t ft = __builtin_ctz((uint32_t)found[s]);
                int64_t tl = ft * (MAXLEX + 1) + m;
                sh[s] = tl;
                eh[s + m - 1] = tl;
            }
            for (int64_t k = 0; k < m; k++) {
                int64_t pl = k == 0 ? 0 : (k == m - 1 ? 2 : 1);
                for (int64_t s = 0; s < width; s++) {
                    if (!found[s]) continue;
                    int64_t ft = __builtin_ctz((uint32_t)found[s]);
                    lg[s + k] = (ft * 3 + pl) * (MAXLEX + 1) + m;
                }
            }
        }
    }
    free(h);
    free(found);
}

typedef struct {
    int64_t V;
    const int64_t *class_of; /* (V,) */
    const int64_t *bi; int64_t n_bi;
    const int64_t *tri; int64_t n_tri;
    const uint8_t *groups; int64_t n_groups; /* (V, n_groups) keyword-group membership */
    const int64_t *bucket; int64_t n_bucket;
} Feat;

#define P(i) (((i) >= 0 && (i) < n) ? x[(i)] : 0)

/* keys: (b, n, T) with T = 83 templates in Featurizer._template_names order (compact n-grams) */
void crf_keys(const Feat *F, const int64_t *ids, const int64_t *lengths, int64_t b, int64_t n,
              const int32_t *begin, const int32_t *end, const int32_t *inside, const int64_t *longest,
              const int64_t *starts_here, const int64_t *ends_here, int64_t T, int64_t *keys) {
    const int64_t V = F->V, G = F->n_groups;
    int64_t *gram2 = (int64_t *)malloc(sizeof(int64_t) * (n + 1));
    int64_t *gram3 = (int64_t *)malloc(sizeof(int64_t) * (n + 1));
    int64_t *nx = (int64_t *)malloc(sizeof(int64_t) * (n * G + 1)); /* next keyword of group g after i, -1 none */
    int64_t *pv = (int64_t *)malloc(sizeof(int64_t) * (n * G + 1)); /* previous one before i */
    for (int64_t r = 0; r < b; r++) {
        const int64_t *x = ids + r * n;
        const int32_t *bg = begin + r * n, *en = end + r * n, *in = inside + r * n;
        const int64_t *lg = longest + r * n, *sh = starts_here + r * n, *eh = ends_here + r * n;
        int64_t last = lengths[r] - 1;
        for (int64_t i = 0; i < n; i++) {
            gram2[i] = P(i) * V + P(i + 1);
            gram3[i] = (P(i) * V + P(i + 1)) * V + P(i + 2);
        }
        for (int64_t g = 0; g < G; g++) {
            int64_t last_seen = -1;
            for (int64_t i = n - 1; i >= 0; i--) {
                nx[i * G + g] = last_seen;
                if (F->groups[x[i] * G + g]) last_seen = i;
            }
            last_seen = -1;
            for (int64_t i = 0; i < n; i++) {
                pv[i * G + g] = last_seen;
                if (F->groups[x[i] * G + g]) last_seen = i;
            }
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t *k = keys + (r * n + i) * T;
            int64_t c = 0;
            k[c++] = 0;
            for (int64_t d = -WINDOW; d <= WINDOW; d++) k[c++] = P(i + d);
            for (int64_t d = -WINDOW; d < WINDOW; d++) k[c++] = place(F->bi, F->n_bi, P(i + d) * V + P(i + d + 1));
            for (int64_t d = -2; d <= 0; d++)
                k[c++] = place(F->tri, F->n_tri, (P(i + d) * V + P(i + d + 1)) * V + P(i + d + 2));
            k[c++] = place(F->bi, F->n_bi, P(i - 1) * V + P(i + 1));
            int64_t c5 = 0;
            for (int64_t d = -2; d <= 2; d++) c5 = c5 * NCLASSES + F->class_of[P(i + d)];
            k[c++] = c5;
            k[c++] = i < 10 ? i : 10;
            int64_t rp = last - i;
            k[c++] = rp < 0 ? 0 : (rp > 10 ? 10 : rp);
            for (int t = 0; t < NTYPES; t++) {
                int64_t code = ((bg[i] >> t) & 1) + ((en[i] >> t) & 1) * 2 + ((in[i] >> t) & 1) * 4;
                k[c++] = code > 0 ? code : -1;
            }
            int64_t cnt = __builtin_popcount((uint32_t)(bg[i] | en[i] | in[i]));
            k[c++] = cnt < 4 ? cnt : 4;
            k[c++] = lg[i];
            k[c++] = i > 0 ? eh[i - 1] : -1;
            k[c++] = i < n - 1 ? sh[i + 1] : -1;
            /* distance buckets to the next / previous keyword of each group */
            for (int64_t g = 0; g < G; g++) {
                int64_t j = nx[i * G + g], d = j - i;
                k[c + g] = j < 0 ? NONE_BUCKET : F->bucket[d < F->n_bucket - 1 ? d : F->n_bucket - 1];
            }
            c += G;
            for (int64_t g = 0; g < G; g++) {
                int64_t j = pv[i * G + g], d = i - j;
                k[c + g] = j < 0 ? NONE_BUCKET : F->bucket[d < F->n_bucket - 1 ? d : F->n_bucket - 1];
            }
            c += G;
            for (int q = 0; q < 2; q++) {
                const int64_t *gr = q == 0 ? gram2 : gram3;
                int64_t code = 0;
                for (int64_t j = 0; j < i; j++) if (gr[j] == gr[i]) { code |= 1; break; }
                for (int64_t j = i + 1; j < n; j++) if (gr[j] == gr[i]) { code |= 2; break; }
                k[c++] = code > 0 ? code : -1;
            }
            k[c++] = P(i) * NCLASSES + F->class_of[P(i + 1)];
        }
    }
    free(gram2);
    free(gram3);
    free(nx);
    free(pv);
}

typedef struct {
    int64_t n_templates, n_labels;
    int64_t n_gcols;            /* grouped templates */
    const int64_t *gcol;        /* template of each grouped column */
    const int64_t *glimit;      /* largest 1-based key in its table */
    const int64_t *ggroup;      /* the group it belongs to */
    const int64_t *gstride;     /* its mixed-radix stride in the group's table */
    int64_t n_groups;
    const int64_t *goffset;     /* row offset of each group's table */
    int64_t n_single;
    const int64_t *stpl;        /* template of each single lookup */
    const int64_t *soff;        /* offset of its dense table in sdense */
    const int64_t *slen;        /* its length */
    const int64_t *sdense;      /* key + 1 -> row (0 = absent) */
    int64_t w_offset;
    const float *table;         /* (rows, n_labels) */
} Crf;

void crf_emit(const Crf *C, const int64_t *keys, int64_t R, float *restrict E) {
    const int64_t L = C->n_labels, T = C->n_templates;
    int64_t *idx = (int64_t *)malloc(sizeof(int64_t) * (C->n_groups + C->n_single + 1));
    for (int64_t r = 0; r < R; r++) {
        const int64_t *k = keys + r * T;
        for (int64_t g = 0; g < C->n_groups; g++) idx[g] = C->goffset[g];
        for (int64_t c = 0; c < C->n_gcols; c++) {
            int64_t K = k[C->gcol[c]] + 1;
            if (K > C->glimit[c]) K = 0;
            idx[C->ggroup[c]] += K * C->gstride[c];
        }
        for (int64_t s = 0; s < C->n_single; s++) {
            int64_t key = k[C->stpl[s]];
            if (key >= C->slen[s] - 1) key = -1;
            idx[C->n_groups + s] = C->sdense[C->soff[s] + key + 1] + C->w_offset;
        }
        float *restrict e = E + r * L;
        for (int64_t j = 0; j < L; j++) e[j] = 0.0f;
        for (int64_t q = 0; q < C->n_groups + C->n_single; q++) __builtin_prefetch(C->table + idx[q] * L);
        for (int64_t q = 0; q < C->n_groups + C->n_single; q++) {
            const float *restrict row = C->table + idx[q] * L;
            for (int64_t j = 0; j < L; j++) e[j] += row[j];
        }
    }
    free(idx);
}

typedef struct {
    int64_t V, H, n_bigrams;
    const int64_t *bigram_keys;
    const float *left[2];  /* (n_bigrams + 1 + V, 4H): char + left bigram (+ bias), per direction */
    const float *right[2]; /* (n_bigrams + 1, 4H) */
    const float *wlex[2];  /* (63, 4H) gazetteer bits: begins / ends / inside x 21 types */
    const float *wdict[2]; /* (15, 4H) dictionary bits, or null */
    int64_t n_lex, n_dict; /* classes: 21, 5 */
} Input;

/* first-layer input pre-activations X (b, n, 4H) of direction d */
void lstm_input(const Input *I, int64_t d, const int64_t *ids, int64_t b, int64_t n, const int32_t *lb,
                const int32_t *le, const int32_t *li, const int32_t *db, const int32_t *de, const int32_t *di,
                float *X) {
    const int64_t G4 = 4 * I->H, V = I->V;
    float *restrict lex = (float *)malloc(sizeof(float) * G4);
    float *restrict dic = (float *)malloc(sizeof(float) * G4);
    for (int64_t r = 0; r < b; r++) {
        const int64_t *x = ids + r * n;
        for (int64_t i = 0; i < n; i++) {
            int64_t o = r * n + i;
            int64_t bl = place(I->bigram_keys, I->n_bigrams, P(i - 1) * V + P(i));
            int64_t br = place(I->bigram_keys, I->n_bigrams, P(i) * V + P(i + 1));
            const float *a = I->left[d] + (bl > 0 ? bl : I->n_bigrams + 1 + x[i]) * G4;
            const float *bb = I->right[d] + br * G4;
            for (int64_t j = 0; j < G4; j++) lex[j] = 0.0f;
            const int32_t m3[3] = {lb[o], le[o], li[o]};
            for (int q = 0; q < 3; q++)
                for (int64_t t = 0; t < I->n_lex; t++)
                    if ((m3[q] >> t) & 1) {
                        const float *restrict w = I->wlex[d] + (q * I->n_lex + t) * G4;
                        for (int64_t j = 0; j < G4; j++) lex[j] += w[j];
                    }
            float *restrict out = X + o * G4;
            if (I->wdict[d]) {
                for (int64_t j = 0; j < G4; j++) dic[j] = 0.0f;
                const int32_t d3[3] = {db[o], de[o], di[o]};
                for (int q = 0; q < 3; q++)
                    for (int64_t t = 0; t < I->n_dict; t++)
                        if ((d3[q] >> t) & 1) {
                            const float *restrict w = I->wdict[d] + (q * I->n_dict + t) * G4;
                            for (int64_t j = 0; j < G4; j++) dic[j] += w[j];
                        }
                for (int64_t j = 0; j < G4; j++) out[j] = ((a[j] + bb[j]) + lex[j]) + dic[j];
            } else {
                for (int64_t j = 0; j < G4; j++) out[j] = (a[j] + bb[j]) + lex[j];
            }
        }
    }
    free(lex);
    free(dic);
}

/* One direction of one LSTM layer over every row: X (b, n, 4H) input pre-activations (gate order
 * i f o g, sigmoid gates pre-halved), whh (H, 4H); writes h into out (b, n, out_stride) at column
 * out_col. Steps past a row's length are left alone (the caller zeroes them).
 *
 * Rows go in blocks of RB that step together (row r at step s reads its own token: s going forward,
 * len_r - 1 - s going back), so each recurrent weight vector loaded serves RB rows from registers:
 * the h @ whh product is a small register-tiled matrix product (RB rows x 32 gate columns per tile). */
#define RB 4
#ifndef TANH
#define TANH fast_tanh
#endif
typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* tanh as a rational function (Eigen's float approximation; a few ulp from libm): inlined and
 * vectorised by the compiler, it costs a fraction of a libm call in the recurrence */
static inline float fast_tanh(float x) {
    const float lim = 7.90531110763549805f;
    x = x > lim ? lim : (x < -lim ? -lim : x);
    if (fabsf(x) < 0.0004f) return x;
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * x;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p / q;
}

/* z[act[a]] = xt[act[a]] + h[act[a]] @ whh for the R active rows of a block, 32 gate columns at a time */
static inline __attribute__((always_inline)) void tile(const int R, const int *act, const float *const *xt,
                                                      const float *restrict h, const float *restrict whh,
                                                      int64_t H, float *restrict z) {
    const int64_t G4 = 4 * H;
    for (int64_t jc = 0; jc < G4; jc += 32) {
        v8 acc[RB][4];
        for (int a = 0; a < R; a++)
            for (int u = 0; u < 4; u++) acc[a][u] = load8(xt[act[a]] + jc + 8 * u);
        for (int64_t k = 0; k < H; k++) {
            const float *w = whh + k * G4 + jc;
            v8 w0 = load8(w), w1 = load8(w + 8), w2 = load8(w + 16), w3 = load8(w + 24);
            for (int a = 0; a < R; a++) {
                v8 hb = (v8){0} + h[act[a] * H + k];
                acc[a][0] += hb * w0; acc[a][1] += hb * w1;
                acc[a][2] += hb * w2; acc[a][3] += hb * w3;
            }
        }
        for (int a = 0; a < R; a++)
            for (int u = 0; u < 4; u++) store8(z + act[a] * G4 + jc + 8 * u, acc[a][u]);
    }
}

/* the same for one row: 64 gate columns at a time, so eight independent accumulators hide the FMA latency */
static void tile1(const int q, const float *restrict x, const float *restrict h, const float *restrict whh, int64_t H,
                  float *restrict z) {
    const int64_t G4 = 4 * H;
    for (int64_t jc = 0; jc < G4; jc += 64) {
        v8 acc[8];
        for (int u = 0; u < 8; u++) acc[u] = load8(x + jc + 8 * u);
        for (int64_t k = 0; k < H; k++) {
            const float *w = whh + k * G4 + jc;
            v8 hb = (v8){0} + h[q * H + k];
            for (int u = 0; u < 8; u++) acc[u] += hb * load8(w + 8 * u);
        }
        for (int u = 0; u < 8; u++) store8(z + q * G4 + jc + 8 * u, acc[u]);
    }
}

void lstm_dir(const float *restrict X, const int64_t *lengths, int64_t b, int64_t n, const float *restrict whh,
              int64_t H, int64_t reverse, float *restrict out, int64_t out_stride, int64_t out_col) {
    const int64_t G4 = 4 * H;
    float *restrict h = (float *)calloc(RB * H, sizeof(float));
    float *restrict c = (float *)calloc(RB * H, sizeof(float));
    float *restrict z = (float *)malloc(sizeof(float) * RB * G4);
    const int tiled = G4 % 32 == 0;
    for (int64_t r0 = 0; r0 < b; r0 += RB) {
        int64_t nr = b - r0 < RB ? b - r0 : RB, maxlen = 0;
        for (int64_t q = 0; q < nr; q++) if (lengths[r0 + q] > maxlen) maxlen = lengths[r0 + q];
        memset(h, 0, sizeof(float) * RB * H);
        memset(c, 0, sizeof(float) * RB * H);
        for (int64_t s = 0; s < maxlen; s++) {
            const float *xt[RB];
            int64_t tt[RB];
            for (int64_t q = 0; q < RB; q++) {
                int64_t len = q < nr ? lengths[r0 + q] : 0;
                tt[q] = s < len ? (reverse ? len - 1 - s : s) : -1;
                xt[q] = tt[q] >= 0 ? X + ((r0 + q) * n + tt[q]) * G4 : X; /* inactive rows: any valid row */
            }
            int act[RB], na = 0;
            for (int q = 0; q < nr; q++) if (tt[q] >= 0) act[na++] = q;
            if (tiled) {
                switch (na) { /* constant row counts: fully unrolled register tiles */
                case 1:
                    if (G4 % 64 == 0) tile1(act[0], xt[act[0]], h, whh, H, z);
                    else tile(1, act, xt, h, whh, H, z);
                    break;
                case 2: tile(2, act, xt, h, whh, H, z); break;
                case 3: tile(3, act, xt, h, whh, H, z); break;
                default: tile(4, act, xt, h, whh, H, z); break;
                }
            } else {
                for (int a = 0; a < na; a++) {
                    int q = act[a];
                    float *restrict zq = z + q * G4;
                    for (int64_t j = 0; j < G4; j++) zq[j] = xt[q][j];
                    for (int64_t k = 0; k < H; k++) {
                        const float hk = h[q * H + k];
                        const float *restrict w = whh + k * G4;
                        for (int64_t j = 0; j < G4; j++) zq[j] += hk * w[j];
                    }
                }
            }
            for (int a = 0; a < na; a++) {
                int q = act[a];
                float *restrict zq = z + q * G4, *restrict hq = h + q * H, *restrict cq = c + q * H;
                for (int64_t j = 0; j < G4; j++) zq[j] = TANH(zq[j]);
                float *restrict o = out + ((r0 + q) * n + tt[q]) * out_stride + out_col;
                for (int64_t j = 0; j < H; j++) {
                    float ig = zq[j] * 0.5f + 0.5f, fg = zq[H + j] * 0.5f + 0.5f, og = zq[2 * H + j] * 0.5f + 0.5f;
                    cq[j] = cq[j] * fg + ig * zq[3 * H + j];
                    hq[j] = og * TANH(cq[j]);
                    o[j] = hq[j];
                }
            }
        }
    }
    free(h);
    free(c);
    free(z);
}

/* Best BIO-constrained paths (b, n) for emissions E (b, n, L); see kernels.viterbi (same ties). */
void viterbi(const float *E, const int64_t *lengths, int64_t b, int64_t n, int64_t L, const float *trans_t,
             const float *trans, const float *start, const float *endv, const int64_t *b_cols, int64_t nb,
             const int64_t *i_cols, const int64_t *i_from_b, int64_t ni, int64_t *path) {
    float *scores = (float *)malloc(sizeof(float) * n * L);
    for (int64_t r = 0; r < b; r++) {
        int64_t m = lengths[r];
        const float *e = E + r * n * L;
        int64_t *pth = path + r * n;
        for (int64_t t = 0; t < n; t++) pth[t] = 0;
        for (int64_t j = 0; j < L; j++) scores[j] = start[j] + e[j];
        for (int64_t t = 1; t < m; t++) {
            const float *s = scores + (t - 1) * L;
            float *cur = scores + t * L;
            for (int64_t jj = 0; jj < nb; jj++) {
                int64_t j = b_cols[jj];
                const float *row = trans_t + j * L;
                float best = s[0] + row[0];
                for (int64_t i = 1; i < L; i++) { float v = s[i] + row[i]; if (v > best) best = v; }
                cur[j] = best + e[t * L + j];
            }
            for (int64_t jj = 0; jj < ni; jj++) {
                int64_t j = i_cols[jj], k = i_from_b[jj];
                float v1 = s[j] + trans[j * L + j], v2 = s[k] + trans[k * L + j];
                cur[j] = (v1 > v2 ? v1 : v2) + e[t * L + j];
            }
        }
        int64_t cur = 0;
        float best = scores[(m - 1) * L] + endv[0];
        for (int64_t j = 1; j < L; j++) {
            float v = scores[(m - 1) * L + j] + endv[j];
            if (v > best) { best = v; cur = j; }
        }
        pth[m - 1] = cur;
        for (int64_t t = m - 1; t > 0; t--) {
            const float *s = scores + (t - 1) * L;
            int64_t arg = 0;
            float bv = s[0] + trans[cur];
            for (int64_t i = 1; i < L; i++) {
                float v = s[i] + trans[i * L + cur];
                if (v > bv) { bv = v; arg = i; }
            }
            cur = arg;
            pth[t - 1] = cur;
        }
    }
    free(scores);
}
