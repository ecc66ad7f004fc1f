// The generic kernels: every quantized type without kernels of its own (the traits table's
// `specialized` is 0) runs these, through its `unpack` (qtypes.h): a weight row is decoded once
// per call into one byte code per weight and a scale and offset per 32 weights, in the thread's
// buffer (L1/L2: 1.06 bytes per weight), and every x row is multiplied against it.
//
//   f32 activations (exact): the row's floats d * c + m (a multiplication, then an addition:
//     the type's dequantization to the bit), dotted with x in f32.
//   8-bit activations: x quantized per 32 (dx = max|x| / 127, q = round(x / dx), as quant_q8.c),
//     per 32 weights s: d_s dx_s sum(c q) in integers, plus m_s dx_s sum(q) where the type has
//     offsets. The portable code is the definition; AVX2 (vpmaddubsw on |c| and q signed by c,
//     vpmaddwd, one FMA per 32 weights and row) gives the same integers and differs only in the
//     order of the f32 additions. The AVX-512 path runs the AVX2 code.
#define _GNU_SOURCE
#include "strata_kernels.h"
#include "common.h"

#include <math.h>

static _Thread_local strata_tls_buf t_gw;  // a worker's unpacked weight row
static _Thread_local strata_tls_buf t_gx;  // the caller's quantized x rows

typedef struct { int8_t *c; float *d, *m, *f; } wrow;

/// The thread's buffer for one unpacked row of k weights (and its k floats when `floats`).
static int wrow_buffer(long k, int floats, wrow *u) {
    const size_t codes = ((size_t)k + 63) & ~(size_t)63, per = ((size_t)(k / 32) * 4 + 63) & ~(size_t)63;
    char *p = (char *)strata_tls_grow(&t_gw, STRATA_TLS_GW, codes + 2 * per + (floats ? (size_t)k * 4 : 0));
    if (!p) return -1;
    u->c = (int8_t *)p;
    u->d = (float *)(p + codes);
    u->m = (float *)(p + codes + per);
    u->f = floats ? (float *)(p + codes + 2 * per) : NULL;
    return 0;
}

INLINE int use_avx2(int isa) { return STRATA_X86 && isa != STRATA_ISA_PORTABLE && strata_isa_supported(STRATA_ISA_AVX2); }

INLINE void unpack_row(int isa, const strata_linear_args *a, long j, const wrow *u) {
    const strata_qtype *t = &strata_qtypes[a->wtype];
    const long nb = a->k / t->elements;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)nb * (size_t)t->bytes;
    (use_avx2(isa) && t->unpack_avx2 ? t->unpack_avx2 : t->unpack)(w, nb, u->c, u->d, u->m);
}

INLINE void store(const strata_linear_args *a, long r, long j, float v) {
    float *y = a->y + r * a->ldy + j;
    *y = a->accumulate ? *y + v : v;
}

// ---- f32 activations ----------------------------------------------------------------------------

static void frows_portable(const strata_linear_args *a, long j0, long j1, const wrow *u) {
    const long k = a->k;
    for (long j = j0; j < j1; j++) {
        unpack_row(STRATA_ISA_PORTABLE, a, j, u);
        for (long i = 0; i < k; i++) u->f[i] = u->d[i / 32] * (float)u->c[i] + u->m[i / 32];
        for (long r = 0; r < a->m; r++) {
            const float *x = a->x + r * a->ldx;
            float s = 0;
            for (long i = 0; i < k; i++) s += u->f[i] * x[i];
            store(a, r, j, s);
        }
    }
}

#if STRATA_X86
#define TGT2 __attribute__((target("avx2,fma,f16c")))

TGT2 static void frows_avx2(const strata_linear_args *a, long j0, long j1, const wrow *u) {
    const long k = a->k;
    for (long j = j0; j < j1; j++) {
        unpack_row(STRATA_ISA_AVX2, a, j, u);
        for (long s = 0; s < k / 32; s++) {
            const __m256 d = _mm256_set1_ps(u->d[s]), m = _mm256_set1_ps(u->m[s]);
            for (int h = 0; h < 4; h++) {
                const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(u->c + 32 * s + 8 * h))));
                _mm256_storeu_ps(u->f + 32 * s + 8 * h, _mm256_add_ps(_mm256_mul_ps(d, c), m));
            }
        }
        for (long r = 0; r < a->m; r++) {
            const float *x = a->x + r * a->ldx;
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (long i = 0; i < k; i += 32) {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(u->f + i), _mm256_loadu_ps(x + i), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(u->f + i + 8), _mm256_loadu_ps(x + i + 8), s1);
                s2 = _mm256_fmadd_ps(_mm256_loadu_ps(u->f + i + 16), _mm256_loadu_ps(x + i + 16), s2);
                s3 = _mm256_fmadd_ps(_mm256_loadu_ps(u->f + i + 24), _mm256_loadu_ps(x + i + 24), s3);
            }
            store(a, r, j, hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))));
        }
    }
}
#endif

void strata_qgeneric_rows_isa(int isa, const strata_linear_args *a, long j0, long j1) {
    if (j1 <= j0 || a->m <= 0) return;
    wrow u;
    if (wrow_buffer(a->k, 1, &u) != 0) {
        // no memory for a row: the exact result block by block from the definition
        float buf[256];
        const strata_qtype *t = &strata_qtypes[a->wtype];
        const long nb = a->k / t->elements;
        for (long j = j0; j < j1; j++)
            for (long r = 0; r < a->m; r++) {
                const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)nb * (size_t)t->bytes;
                const float *x = a->x + r * a->ldx;
                float s = 0;
                for (long b = 0; b < nb; b++) {
                    t->dequant(w + b * t->bytes, buf);
                    for (long i = 0; i < t->elements; i++) s += buf[i] * x[b * t->elements + i];
                }
                store(a, r, j, s);
            }
        return;
    }
#if STRATA_X86
    if (use_avx2(isa)) { frows_avx2(a, j0, j1, &u); return; }
#endif
    frows_portable(a, j0, j1, &u);
}

// ---- 8-bit activations --------------------------------------------------------------------------

/// x rows quantized per 32: codes q[m][k], scales dx[m][k/32], dx * sum(q) xs[m][k/32].
typedef struct { const int8_t *q; const float *dx, *xs; long k; } qx;

static int quantize_x(const strata_linear_args *a, qx *X) {
    const long k = a->k, ns = k / 32, m = a->m;
    const size_t codes = ((size_t)(m * k) + 63) & ~(size_t)63, per = (size_t)(m * ns) * 4;
    char *p = (char *)strata_tls_grow(&t_gx, STRATA_TLS_GX, codes + 2 * per);
    if (!p) return -1;
    int8_t *q = (int8_t *)p;
    float *dx = (float *)(p + codes), *xs = (float *)(p + codes + per);
    for (long r = 0; r < m; r++) {
        const float *x = a->x + r * a->ldx;
        for (long s = 0; s < ns; s++) {
            float amax = 0;
            for (int i = 0; i < 32; i++) { const float v = fabsf(x[32 * s + i]); if (v > amax) amax = v; }
            const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
            int sum = 0;
            for (int i = 0; i < 32; i++) {
                const int v = (int)lrintf(x[32 * s + i] * id);
                q[r * k + 32 * s + i] = (int8_t)v;
                sum += v;
            }
            dx[r * ns + s] = d;
            xs[r * ns + s] = d * (float)sum;
        }
    }
    X->q = q; X->dx = dx; X->xs = xs; X->k = k;
    return 0;
}

INLINE float offsets(const wrow *u, const qx *X, long r, long ns) {
    float s = 0;
    for (long i = 0; i < ns; i++) s += u->m[i] * X->xs[r * ns + i];
    return s;
}

static void qrows_portable(const strata_linear_args *a, const qx *X, long j0, long j1, const wrow *u) {
    const long k = a->k, ns = k / 32;
    const int off = strata_qtypes[a->wtype].has_offset;
    for (long j = j0; j < j1; j++) {
        unpack_row(STRATA_ISA_PORTABLE, a, j, u);
        for (long r = 0; r < a->m; r++) {
            const int8_t *q = X->q + r * k;
            float s = 0;
            for (long b = 0; b < ns; b++) {
                int is = 0;
                for (int i = 0; i < 32; i++) is += (int)u->c[32 * b + i] * (int)q[32 * b + i];
                s += u->d[b] * X->dx[r * ns + b] * (float)is;
            }
            store(a, r, j, off ? s + offsets(u, X, r, ns) : s);
        }
    }
}

#if STRATA_X86
/// R (1-4) x rows from r against the unpacked row.
TGT2 INLINE void qdot_avx2(const int R, const wrow *u, const qx *X, long r, long ns, float *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    const int8_t *q[4];
    const float *dx[4];
    UNROLL for (int i = 0; i < R; i++) { acc[i] = _mm256_setzero_ps(); q[i] = X->q + (r + i) * X->k; dx[i] = X->dx + (r + i) * ns; }
    for (long b = 0; b < ns; b++) {
        const __m256i c = _mm256_loadu_si256((const __m256i *)(u->c + 32 * b));
        const __m256i ca = _mm256_sign_epi8(c, c);
        const float d = u->d[b];
        UNROLL for (int i = 0; i < R; i++) {
            const __m256i qv = _mm256_loadu_si256((const __m256i *)(q[i] + 32 * b));
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(ca, _mm256_sign_epi8(qv, c)), ones);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * dx[i][b]), acc[i]);
        }
    }
    UNROLL for (int i = 0; i < R; i++) out[i] = hsum8(acc[i]);
}

TGT2 static void qrows_avx2(const strata_linear_args *a, const qx *X, long j0, long j1, const wrow *u) {
    const long ns = a->k / 32;
    const int off = strata_qtypes[a->wtype].has_offset;
    float v[4];
    for (long j = j0; j < j1; j++) {
        unpack_row(STRATA_ISA_AVX2, a, j, u);
        long r = 0;
        for (; r + 4 <= a->m; r += 4) {
            qdot_avx2(4, u, X, r, ns, v);
            for (int i = 0; i < 4; i++) store(a, r + i, j, off ? v[i] + offsets(u, X, r + i, ns) : v[i]);
        }
        for (; r < a->m; r++) {
            qdot_avx2(1, u, X, r, ns, v);
            store(a, r, j, off ? v[0] + offsets(u, X, r, ns) : v[0]);
        }
    }
}
#endif

static void q8_rows(int isa, const strata_linear_args *a, const qx *X, long j0, long j1) {
    wrow u;
    if (wrow_buffer(a->k, 0, &u) != 0) { strata_qgeneric_rows_isa(STRATA_ISA_PORTABLE, a, j0, j1); return; }
#if STRATA_X86
    if (use_avx2(isa)) { qrows_avx2(a, X, j0, j1, &u); return; }
#endif
    qrows_portable(a, X, j0, j1, &u);
}

void strata_qgeneric_q8_rows_isa(int isa, const strata_linear_args *a, long j0, long j1) {
    if (j1 <= j0 || a->m <= 0) return;
    qx X;
    if (quantize_x(a, &X) != 0) { strata_qgeneric_rows_isa(isa, a, j0, j1); return; }
    q8_rows(isa, a, &X, j0, j1);
}

typedef struct { const strata_linear_args *a; const qx *X; long per; int isa; } gjob;

static void gchunk(void *ctx, long c) {
    const gjob *g = (const gjob *)ctx;
    const long j0 = c * g->per, j1 = j0 + g->per < g->a->n ? j0 + g->per : g->a->n;
    if (j1 > j0) q8_rows(g->isa, g->a, g->X, j0, j1);
}

void strata_qgeneric_q8(const strata_linear_args *a, long chunks, long per) {
    if (a->n <= 0 || a->m <= 0) return;
    qx X;
    const int isa = strata_kernels_isa();
    if (quantize_x(a, &X) != 0) {
        // no memory for the quantized x: the exact kernel, one chunk at a time
        for (long c = 0; c < chunks; c++) {
            const long j0 = c * per, j1 = j0 + per < a->n ? j0 + per : a->n;
            strata_qgeneric_rows_isa(isa, a, j0, j1);
        }
        return;
    }
    gjob g = {a, &X, per, isa};
    if (chunks == 1) gchunk(&g, 0);
    else strata_pool_run(gchunk, &g, chunks);
}
