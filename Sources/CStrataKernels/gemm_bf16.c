// Prompt processing with bf16 products (the fast, STRATA_ACT_Q8 mode, many rows) over quantized,
// f16 or bf16 weights: y[M, N] (+)= x[M, K] * W[N, K]^T where x is rounded to bf16 and W is used
// as it lies (bf16), rounded from f16, or dequantized band by band and rounded to bf16; AVX-512 BF16's vdpbf16ps multiplies 32 bf16 pairs per instruction into f32
// sums (twice an f32 FMA's), in register tiles of 4 x rows by 6 weight rows.
#define _GNU_SOURCE
#include "strata_kernels.h"
#include "common.h"

#include <stdlib.h>

#if STRATA_X86
#define TGTB __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))

/// f32 -> bf16, round to nearest even (as vcvtneps2bf16), n a multiple of 16.
TGTB static void to_bf16(const float *x, uint16_t *y, long n) {
    for (long i = 0; i < n; i += 16) _mm256_storeu_si256((__m256i *)(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
}

/// f16 -> bf16 through f32 (exact widening, then round to nearest even), n a multiple of 16.
TGTB static void f16_to_bf16(const uint16_t *x, uint16_t *y, long n) {
    for (long i = 0; i < n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i)))));
}

typedef struct { const uint16_t *src; uint16_t *dst; long k, per, rows; } cvt_job;
TGTB static void cvt_chunk(void *ctx, long c) {
    const cvt_job *j = (const cvt_job *)ctx;
    const long r0 = c * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    if (r1 > r0) f16_to_bf16(j->src + r0 * j->k, j->dst + r0 * j->k, (r1 - r0) * j->k);
}

/// RB x rows by JB weight rows (RB <= 4, JB <= 6), K in steps of 32 (k a multiple of 32). At
/// 4 x 6, 24 accumulators, 6 weight vectors and one x vector fill the 32 zmm registers: 10
/// loads feed 24 vdpbf16ps (4 x 4: 8 loads for 16), and on Zen 4 the loads are what binds.
/// pf, when not NULL: rows [pf0, pf1) of the next block of weight rows (from pf, row stride
/// ldw) are prefetched a line per step, so the next block comes in from memory while this one
/// is multiplied instead of in its first pass.
TGTB INLINE void tile(const int RB, const int JB, const uint16_t *xb, long ldx, const uint16_t *wb, long ldw, long k,
                      float *y, long ldy, int acc_on, const uint16_t *pf, int pf0, int pf1) {
    __m512 s[4][6];
    for (int r = 0; r < RB; r++) for (int j = 0; j < JB; j++) s[r][j] = _mm512_setzero_ps();
    for (long i = 0; i < k; i += 32) {
        if (pf)
            for (int q = pf0; q < pf1; q++) _mm_prefetch((const char *)(pf + q * ldw + i), _MM_HINT_T0);
        __m512bh w[6];
        for (int j = 0; j < JB; j++) w[j] = (__m512bh)_mm512_loadu_si512(wb + j * ldw + i);
        for (int r = 0; r < RB; r++) {
            const __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + r * ldx + i);
            for (int j = 0; j < JB; j++) s[r][j] = _mm512_dpbf16_ps(s[r][j], xv, w[j]);
        }
    }
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < JB; j++) {
            const float v = _mm512_reduce_add_ps(s[r][j]);
            y[r * ldy + j] = acc_on ? y[r * ldy + j] + v : v;
        }
}

typedef struct {
    const uint16_t *xb; long ldx; const uint16_t *wb; long ldw; float *y; long ldy; long m, n, k; int acc; long per;
} gemm_job;

TGTB static void gemm_chunk(void *ctx, long c) {
    const gemm_job *g = (const gemm_job *)ctx;
    const long j0 = c * g->per, j1 = j0 + g->per < g->n ? j0 + g->per : g->n;
    // 64 x rows at a time against this chunk's weight rows, so a chunk's weights stay in L2
    for (long r0 = 0; r0 < g->m; r0 += 64) {
        const long r1 = r0 + 64 < g->m ? r0 + 64 : g->m;
        long j = j0;
        for (; j + 6 <= j1; j += 6) {
            // the next 6 weight rows of this chunk (when it has 6 more) are
            // prefetched over this block's passes, a share of the rows per group of x rows
            const uint16_t *nx = j + 12 <= j1 ? g->wb + (j + 6) * g->ldw : NULL;
            const long groups = (r1 - r0) / 4 > 0 ? (r1 - r0) / 4 : 1;  // whole groups of 4 x rows
            const int share = (int)((6 + groups - 1) / groups);
            long r = r0;
            for (; r + 4 <= r1; r += 4) {
                const int q0 = (int)((r - r0) / 4) * share, q1 = q0 + share < 6 ? q0 + share : 6;
                tile(4, 6, g->xb + r * g->ldx, g->ldx, g->wb + j * g->ldw, g->ldw, g->k, g->y + r * g->ldy + j, g->ldy, g->acc,
                     q0 < 6 ? nx : NULL, q0, q1);
            }
            for (; r < r1; r++) tile(1, 6, g->xb + r * g->ldx, g->ldx, g->wb + j * g->ldw, g->ldw, g->k, g->y + r * g->ldy + j, g->ldy, g->acc, NULL, 0, 0);
        }
        for (; j + 4 <= j1; j += 4) {
            long r = r0;
            for (; r + 4 <= r1; r += 4) tile(4, 4, g->xb + r * g->ldx, g->ldx, g->wb + j * g->ldw, g->ldw, g->k, g->y + r * g->ldy + j, g->ldy, g->acc, NULL, 0, 0);
            for (; r < r1; r++) tile(1, 4, g->xb + r * g->ldx, g->ldx, g->wb + j * g->ldw, g->ldw, g->k, g->y + r * g->ldy + j, g->ldy, g->acc, NULL, 0, 0);
        }
        for (; j < j1; j++) {
            long r = r0;
            for (; r + 4 <= r1; r += 4) tile(4, 1, g->xb + r * g->ldx, g->ldx, g->wb + j * g->ldw, g->ldw, g->k, g->y + r * g->ldy + j, g->ldy, g->acc, NULL, 0, 0);
            for (; r < r1; r++) tile(1, 1, g->xb + r * g->ldx, g->ldx, g->wb + j * g->ldw, g->ldw, g->k, g->y + r * g->ldy + j, g->ldy, g->acc, NULL, 0, 0);
        }
    }
}
#endif

int strata_bf16_gemm_supported(void) {
#if STRATA_X86
    __builtin_cpu_init();
    return strata_isa_supported(STRATA_ISA_AVX512) && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

static _Thread_local strata_tls_buf t_xb, t_wb;

int strata_qlinear_bf16_gemm(const strata_linear_args *a, float *scratch, long band) {
#if STRATA_X86
    if (!strata_bf16_gemm_supported() || a->k % 32 != 0 || a->wtype == STRATA_W_F32) return -1;
    const long k = a->k, n = a->n, m = a->m;
    const int bf16 = a->wtype == STRATA_W_BF16, f16 = a->wtype == STRATA_W_F16;
    uint16_t *xb = (uint16_t *)strata_tls_grow(&t_xb, STRATA_TLS_XB, (size_t)m * (size_t)k * 2);
    // bf16 weights are multiplied where they lie: one band of all rows, no copy
    if (band > n || bf16) band = n;
    uint16_t *wb = bf16 ? NULL : (uint16_t *)strata_tls_grow(&t_wb, STRATA_TLS_WB, (size_t)band * (size_t)k * 2);
    if (!xb || (!bf16 && !wb)) return -1;
    for (long r = 0; r < m; r++) to_bf16(a->x + r * a->ldx, xb + r * k, k);
    const long rowBytes = bf16 || f16 ? 2 * k : k / qblock_elements(a->wtype) * qblock_bytes(a->wtype);
    const int threads = strata_pool_threads();
    for (long o = 0; o < n; o += band) {
        const long nb = o + band < n ? band : n - o;
        if (bf16) {
            wb = (uint16_t *)((const char *)a->w + o * rowBytes);
        } else if (f16) {
            // f16 -> bf16 over the pool (the band's rows split)
            long cc = 4L * threads, per = (nb + cc - 1) / cc;
            cvt_job cj = {(const uint16_t *)((const char *)a->w + o * rowBytes), wb, k, per, nb};
            strata_pool_run(cvt_chunk, &cj, (nb + per - 1) / per);
        } else {
            strata_dequantize(a->wtype, (const char *)a->w + o * rowBytes, scratch, nb * k);
            to_bf16(scratch, wb, nb * k);
        }
        long chunks = 4L * threads;
        if (chunks > nb / 4) chunks = nb / 4 > 0 ? nb / 4 : 1;
        long per = (nb + chunks - 1) / chunks;
        per = (per + 5) / 6 * 6;  // whole 6-row tiles per chunk
        chunks = (nb + per - 1) / per;
        gemm_job g = {xb, k, wb, k, a->y + o, a->ldy, m, nb, k, a->accumulate, per};
        if (chunks == 1) gemm_chunk(&g, 0);
        else strata_pool_run(gemm_chunk, &g, chunks);
    }
    return 0;
#else
    (void)a; (void)scratch; (void)band;
    return -1;
#endif
}
