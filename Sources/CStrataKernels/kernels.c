// Strata's SIMD kernels: few-row linear layers over f32 / f16 / bf16 weights, the linear's
// dispatch to the quantized kernels (quant.c, quant_q8.c, quant_generic.c) and over the pool, a
// memory-read kernel, the row softmax. Below all kernel files: runtime.c (the path, the
// activations mode, per-thread scratch, the worker pool). See include/strata_kernels.h.
//
// Weight layouts read here:
//   f32  : IEEE binary32, 4 bytes
//   f16  : IEEE binary16, 2 bytes (widened exactly: subnormals, Inf and NaN kept)
//   bf16 : the top 16 bits of a binary32, 2 bytes (widened by a 16-bit shift)
#define _GNU_SOURCE
#include "strata_kernels.h"
#include "common.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


// ---- portable path ---------------------------------------------------------------------

INLINE float load_w1(int t, const void *w, long i) {
    switch (t) {
    case STRATA_W_F16: return f16_to_f32(((const uint16_t *)w)[i]);
    case STRATA_W_BF16: return bf16_to_f32(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

INLINE size_t wsize(int t) { return t == STRATA_W_F32 ? 4 : 2; }

INLINE void store(float *y, float v, int acc) { *y = acc ? *y + v : v; }

/// Portable: four weight rows per pass, each x row against them, four partial sums per dot.
INLINE void rows_portable_t(const int t, const strata_linear_args *a, long j0, long j1) {
    const long k = a->k, m = a->m;
    const char *W = (const char *)a->w;
    const size_t rs = (size_t)k * wsize(t);
    long j = j0;
    for (; j + 4 <= j1; j += 4) {
        const void *w0 = W + (size_t)j * rs, *w1 = W + (size_t)(j + 1) * rs;
        const void *w2 = W + (size_t)(j + 2) * rs, *w3 = W + (size_t)(j + 3) * rs;
        for (long r = 0; r < m; r++) {
            const float *x = a->x + r * a->ldx;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (long i = 0; i < k; i++) {
                float xv = x[i];
                s0 += load_w1(t, w0, i) * xv;
                s1 += load_w1(t, w1, i) * xv;
                s2 += load_w1(t, w2, i) * xv;
                s3 += load_w1(t, w3, i) * xv;
            }
            float *y = a->y + r * a->ldy + j;
            store(y, s0, a->accumulate); store(y + 1, s1, a->accumulate);
            store(y + 2, s2, a->accumulate); store(y + 3, s3, a->accumulate);
        }
    }
    for (; j < j1; j++) {
        const void *w0 = W + (size_t)j * rs;
        for (long r = 0; r < m; r++) {
            const float *x = a->x + r * a->ldx;
            float s = 0;
            for (long i = 0; i < k; i++) s += load_w1(t, w0, i) * x[i];
            store(a->y + r * a->ldy + j, s, a->accumulate);
        }
    }
}

static void rows_portable(const strata_linear_args *a, long j0, long j1) {
    switch (a->wtype) {
    case STRATA_W_F16: rows_portable_t(STRATA_W_F16, a, j0, j1); break;
    case STRATA_W_BF16: rows_portable_t(STRATA_W_BF16, a, j0, j1); break;
    default: rows_portable_t(STRATA_W_F32, a, j0, j1); break;
    }
}

static float read_portable(const float *p, long n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    long i = 0;
    for (; i + 4 <= n; i += 4) { s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]; }
    for (; i < n; i++) s0 += p[i];
    return s0 + s1 + s2 + s3;
}

#if STRATA_X86
// ---- AVX2 + FMA + F16C path --------------------------------------------------------------
#define TGT2 __attribute__((target("avx2,fma,f16c")))

TGT2 INLINE __m256 ld8(const int t, const void *w, long i) {
    switch (t) {
    case STRATA_W_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    case STRATA_W_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i))), 16));
    default: return _mm256_loadu_ps((const float *)w + i);
    }
}


/// JB weight rows x RB x rows, 8 lanes; the K % 8 tail in scalar.
TGT2 INLINE void blk2(const int t, const int JB, const int RB, const strata_linear_args *a, long j, long r) {
    const long k = a->k, k8 = k & ~7L;
    const char *W = (const char *)a->w;
    const size_t rs = (size_t)k * wsize(t);
    const void *wr[4];
    const float *xr[6];
    for (int jj = 0; jj < JB; jj++) wr[jj] = W + (size_t)(j + jj) * rs;
    for (int rr = 0; rr < RB; rr++) xr[rr] = a->x + (r + rr) * a->ldx;
    __m256 s[4][6];
    for (int jj = 0; jj < JB; jj++)
        for (int rr = 0; rr < RB; rr++) s[jj][rr] = _mm256_setzero_ps();
    for (long i = 0; i < k8; i += 8) {
        __m256 wv[4];
        for (int jj = 0; jj < JB; jj++) wv[jj] = ld8(t, wr[jj], i);
        for (int rr = 0; rr < RB; rr++) {
            __m256 xv = _mm256_loadu_ps(xr[rr] + i);
            for (int jj = 0; jj < JB; jj++) s[jj][rr] = _mm256_fmadd_ps(wv[jj], xv, s[jj][rr]);
        }
    }
    for (int jj = 0; jj < JB; jj++)
        for (int rr = 0; rr < RB; rr++) {
            float v = hsum8(s[jj][rr]);
            for (long i = k8; i < k; i++) v += load_w1(t, wr[jj], i) * xr[rr][i];
            store(a->y + (r + rr) * a->ldy + j + jj, v, a->accumulate);
        }
}

/// One weight row x RB x rows, the K loop unrolled U times (U * RB independent accumulators):
/// the weights are read as one sequential stream, which the hardware prefetcher follows best,
/// and enough FMA chains are in flight that their latency does not limit the read (the few-row
/// case).
TGT2 INLINE void row2(const int t, const int U, const int RB, const int PF, const strata_linear_args *a, long j, long r) {
    const long k = a->k, kU = k / (8 * U) * (8 * U), k8 = k & ~7L;
    const void *w = (const char *)a->w + (size_t)j * (size_t)k * wsize(t);
    const float *xr[4];
    for (int rr = 0; rr < RB; rr++) xr[rr] = a->x + (r + rr) * a->ldx;
    __m256 s[4][4];
    for (int u = 0; u < U; u++)
        for (int rr = 0; rr < RB; rr++) s[u][rr] = _mm256_setzero_ps();
    long i = 0;
    for (; i < kU; i += 8 * U) {
        if (PF > 0) {
            for (int q = 0; q < (int)(8 * U * wsize(t)); q += 64) _mm_prefetch((const char *)w + (size_t)i * wsize(t) + PF + q, _MM_HINT_T0);
        }
        for (int u = 0; u < U; u++) {
            __m256 wv = ld8(t, w, i + 8 * u);
            for (int rr = 0; rr < RB; rr++) s[u][rr] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xr[rr] + i + 8 * u), s[u][rr]);
        }
    }
    for (; i < k8; i += 8) {
        __m256 wv = ld8(t, w, i);
        for (int rr = 0; rr < RB; rr++) s[0][rr] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xr[rr] + i), s[0][rr]);
    }
    for (int rr = 0; rr < RB; rr++) {
        for (int u = 1; u < U; u++) s[0][rr] = _mm256_add_ps(s[0][rr], s[u][rr]);
        float v = hsum8(s[0][rr]);
        for (long q = k8; q < k; q++) v += load_w1(t, w, q) * xr[rr][q];
        store(a->y + (r + rr) * a->ldy + j, v, a->accumulate);
    }
}

TGT2 INLINE void rows_avx2_t(const int t, const strata_linear_args *a, long j0, long j1) {
    const long m = a->m;
    if (m == 1 && t == STRATA_W_F32) {
        // one row of f32 weights: four weight rows at a time, one x load per four FMAs;
        // alternated in one process against one row at a time (bench-linear, 2 threads) it read
        // f32 weights 9-21% faster; for 16-bit weights the two were level in bench-linear and
        // the one-stream walk decoded faster beside llama.cpp, so 16-bit keeps it
        long j = j0;
        for (; j + 4 <= j1; j += 4) blk2(t, 4, 1, a, j, 0);
        for (; j < j1; j++) blk2(t, 1, 1, a, j, 0);
        return;
    }
    if (m <= 4) {
        // up to 4 rows: one weight row at a time, prefetching 256 bytes ahead of the weight stream
        // (measured 3-10% faster for 1-2 rows)
        for (long j = j0; j < j1; j++) {
            switch (m) {
            case 4: row2(t, 2, 4, 256, a, j, 0); break;
            case 3: row2(t, 2, 3, 256, a, j, 0); break;
            case 2: row2(t, 4, 2, 256, a, j, 0); break;
            default: row2(t, 4, 1, 256, a, j, 0); break;
            }
        }
        return;
    }
    // two weight rows x six x rows: 12 accumulators, each widened weight vector serves 6 FMAs
    long j = j0;
    for (; j + 2 <= j1; j += 2) {
        long r = 0;
        for (; r + 6 <= m; r += 6) blk2(t, 2, 6, a, j, r);
        switch (m - r) {
        case 5: blk2(t, 2, 5, a, j, r); break;
        case 4: blk2(t, 2, 4, a, j, r); break;
        case 3: blk2(t, 2, 3, a, j, r); break;
        case 2: blk2(t, 2, 2, a, j, r); break;
        case 1: blk2(t, 2, 1, a, j, r); break;
        default: break;
        }
    }
    for (; j < j1; j++) {
        long r = 0;
        for (; r + 6 <= m; r += 6) blk2(t, 1, 6, a, j, r);
        for (; r < m; r++) blk2(t, 1, 1, a, j, r);
    }
}

TGT2 static void rows_avx2(const strata_linear_args *a, long j0, long j1) {
    switch (a->wtype) {
    case STRATA_W_F16: rows_avx2_t(STRATA_W_F16, a, j0, j1); break;
    case STRATA_W_BF16: rows_avx2_t(STRATA_W_BF16, a, j0, j1); break;
    default: rows_avx2_t(STRATA_W_F32, a, j0, j1); break;
    }
}

TGT2 static float read_avx2(const float *p, long n, long pf) {
    __m256 s[8];
    for (int u = 0; u < 8; u++) s[u] = _mm256_setzero_ps();
    long i = 0;
    const long pfn = pf / 4;
    for (; i + 64 <= n; i += 64) {
        if (pf > 0) { _mm_prefetch((const char *)(p + i + pfn), _MM_HINT_T0); _mm_prefetch((const char *)(p + i + pfn + 16), _MM_HINT_T0);
                      _mm_prefetch((const char *)(p + i + pfn + 32), _MM_HINT_T0); _mm_prefetch((const char *)(p + i + pfn + 48), _MM_HINT_T0); }
        for (int u = 0; u < 8; u++) s[u] = _mm256_add_ps(s[u], _mm256_loadu_ps(p + i + 8 * u));
    }
    for (int u = 1; u < 8; u++) s[0] = _mm256_add_ps(s[0], s[u]);
    float v = hsum8(s[0]);
    for (; i < n; i++) v += p[i];
    return v;
}

// ---- AVX-512 F/BW/VL path ---------------------------------------------------------------
#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

TGT512 INLINE __m512 ld16(const int t, const void *w, long i) {
    switch (t) {
    case STRATA_W_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
    case STRATA_W_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i))), 16));
    default: return _mm512_loadu_ps((const float *)w + i);
    }
}

/// The first `mask` lanes of 16 weights from element i (the K tail), zero elsewhere.
TGT512 INLINE __m512 ld16m(const int t, const void *w, long i, __mmask16 mask) {
    switch (t) {
    case STRATA_W_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + i));
    case STRATA_W_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + i)), 16));
    default: return _mm512_maskz_loadu_ps(mask, (const float *)w + i);
    }
}

/// JB weight rows x RB x rows over K elements [i0, i1) (i0 a multiple of 16; the K % 16 tail by
/// masked loads when i1 == k), 16 lanes: the partial sums `acc[jj * 4 + rr]` are read and written
/// back (the compiler keeps them in registers across the loop). PF: prefetch each weight row's
/// stream 1 KiB ahead (the pass that brings the weights in from memory).
TGT512 INLINE void span512(const int t, const int JB, const int RB, const int PF, const strata_linear_args *a, long j, long r,
                           long i0, long i1, __m512 *acc) {
    const long k16 = i1 & ~15L;
    const char *W = (const char *)a->w;
    const size_t rs = (size_t)a->k * wsize(t);
    const void *wr[6];
    const float *xr[4];
    for (int jj = 0; jj < JB; jj++) wr[jj] = W + (size_t)(j + jj) * rs;
    for (int rr = 0; rr < RB; rr++) xr[rr] = a->x + (r + rr) * a->ldx;
    __m512 s[6][4];
    for (int jj = 0; jj < JB; jj++)
        for (int rr = 0; rr < RB; rr++) s[jj][rr] = acc[jj * 4 + rr];
    for (long i = i0; i < k16; i += 16) {
        __m512 wv[6];
        // each weight row's stream prefetched 1 KiB ahead, a cache line per 64 bytes of it
        if (PF && ((i * wsize(t)) & 63) == 0)
            for (int jj = 0; jj < JB; jj++) _mm_prefetch((const char *)wr[jj] + (size_t)i * wsize(t) + 1024, _MM_HINT_T0);
        for (int jj = 0; jj < JB; jj++) wv[jj] = ld16(t, wr[jj], i);
        for (int rr = 0; rr < RB; rr++) {
            __m512 xv = _mm512_loadu_ps(xr[rr] + i);
            for (int jj = 0; jj < JB; jj++) s[jj][rr] = _mm512_fmadd_ps(wv[jj], xv, s[jj][rr]);
        }
    }
    if (k16 < i1) {
        const __mmask16 mask = (__mmask16)((1u << (i1 - k16)) - 1);
        __m512 wv[6];
        for (int jj = 0; jj < JB; jj++) wv[jj] = ld16m(t, wr[jj], k16, mask);
        for (int rr = 0; rr < RB; rr++) {
            __m512 xv = _mm512_maskz_loadu_ps(mask, xr[rr] + k16);
            for (int jj = 0; jj < JB; jj++) s[jj][rr] = _mm512_fmadd_ps(wv[jj], xv, s[jj][rr]);
        }
    }
    for (int jj = 0; jj < JB; jj++)
        for (int rr = 0; rr < RB; rr++) acc[jj * 4 + rr] = s[jj][rr];
}

/// JB weight rows x RB x rows over the whole K in one pass.
TGT512 INLINE void blk512(const int t, const int JB, const int RB, const strata_linear_args *a, long j, long r) {
    __m512 acc[16];
    for (int q = 0; q < 16; q++) acc[q] = _mm512_setzero_ps();
    span512(t, JB, RB, 1, a, j, r, 0, a->k, acc);
    for (int jj = 0; jj < JB; jj++)
        for (int rr = 0; rr < RB; rr++)
            store(a->y + (r + rr) * a->ldy + j + jj, _mm512_reduce_add_ps(acc[jj * 4 + rr]), a->accumulate);
}

/// JB (6, 4 or 1) weight rows x rows [r0, r1) (at most 32), more than 4: K is walked in tiles of
/// 4 KiB of each weight row (1024 f32 or 2048 16-bit elements), so the JB rows' tile (24 KiB at
/// JB = 6) stays in L1 while each group of 4 x rows passes over it, the x rows' tiles coming from
/// L2; the weights come from memory once, in the first group's pass. (One pass per group over the
/// whole K, as `blk512` does, re-reads the weights from L2 for every group: f32 at 16 rows ran
/// at 92 GFLOP/s against 234 for bf16, bench-linear. Tiles sized so that x stayed in L1 as well,
/// 16 KiB of x, were 2-40% slower at 12-32 rows: docs/kernels.md, "The K tile".) Six weight rows
/// x 4 x rows hold 24 accumulators, 6 weight vectors and an x vector in the 32 registers, and
/// load an x vector (from L2) per 6 FMAs where 4 weight rows loaded one per 4: bench-batch at
/// batch 16, 4 alternated rounds, bf16 113.9 -> 122.8 and f32 90.5 -> 95.8 tokens/s (medians;
/// docs/kernels.md, "Six weight rows").
TGT512 INLINE void blkt512(const int t, const int JB, const strata_linear_args *a, long j, long r0, long r1) {
    const long k = a->k, rows = r1 - r0, kt = 4096 / (long)wsize(t);
    __m512 acc[8][24];
    const long groups = (rows + 3) / 4;
    for (long g = 0; g < groups; g++)
        for (int q = 0; q < 24; q++) acc[g][q] = _mm512_setzero_ps();
    for (long i0 = 0; i0 < k; i0 += kt) {
        const long i1 = i0 + kt < k ? i0 + kt : k;
        long g = 0, r = r0;
        for (; r + 4 <= r1; r += 4, g++) {
            if (g == 0) span512(t, JB, 4, 1, a, j, r, i0, i1, acc[g]);
            else span512(t, JB, 4, 0, a, j, r, i0, i1, acc[g]);
        }
        switch (r1 - r) {
        case 3: span512(t, JB, 3, 0, a, j, r, i0, i1, acc[g]); break;
        case 2: span512(t, JB, 2, 0, a, j, r, i0, i1, acc[g]); break;
        case 1: span512(t, JB, 1, 0, a, j, r, i0, i1, acc[g]); break;
        default: break;
        }
    }
    for (long r = r0, g = 0; r < r1; r += 4, g++) {
        const long rb = r1 - r < 4 ? r1 - r : 4;
        for (int jj = 0; jj < JB; jj++)
            for (long rr = 0; rr < rb; rr++)
                store(a->y + (r + rr) * a->ldy + j + jj, _mm512_reduce_add_ps(acc[g][jj * 4 + rr]), a->accumulate);
    }
}

/// One weight row x RB x rows, 16 lanes, the K loop unrolled U times (U * RB accumulators), the
/// weight stream prefetched PF bytes ahead; the K % 16 tail by masked loads. The weights of a
/// thread's chunk are read as one sequential stream (the few-row case, as row2 on AVX2).
TGT512 INLINE void row512(const int t, const int U, const int RB, const int PF, const strata_linear_args *a, long j, long r) {
    const long k = a->k, kU = k / (16 * U) * (16 * U), k16 = k & ~15L;
    const void *w = (const char *)a->w + (size_t)j * (size_t)k * wsize(t);
    const float *xr[4];
    for (int rr = 0; rr < RB; rr++) xr[rr] = a->x + (r + rr) * a->ldx;
    __m512 s[4][4];
    for (int u = 0; u < U; u++)
        for (int rr = 0; rr < RB; rr++) s[u][rr] = _mm512_setzero_ps();
    long i = 0;
    for (; i < kU; i += 16 * U) {
        if (PF > 0) {
            for (int q = 0; q < (int)(16 * U * wsize(t)); q += 64) _mm_prefetch((const char *)w + (size_t)i * wsize(t) + PF + q, _MM_HINT_T0);
        }
        for (int u = 0; u < U; u++) {
            __m512 wv = ld16(t, w, i + 16 * u);
            for (int rr = 0; rr < RB; rr++) s[u][rr] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xr[rr] + i + 16 * u), s[u][rr]);
        }
    }
    for (; i < k16; i += 16) {
        __m512 wv = ld16(t, w, i);
        for (int rr = 0; rr < RB; rr++) s[0][rr] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xr[rr] + i), s[0][rr]);
    }
    if (k16 < k) {
        const __mmask16 mask = (__mmask16)((1u << (k - k16)) - 1);
        __m512 wv = ld16m(t, w, k16, mask);
        for (int rr = 0; rr < RB; rr++) s[0][rr] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, xr[rr] + k16), s[0][rr]);
    }
    for (int rr = 0; rr < RB; rr++) {
        for (int u = 1; u < U; u++) s[0][rr] = _mm512_add_ps(s[0][rr], s[u][rr]);
        store(a->y + (r + rr) * a->ldy + j, _mm512_reduce_add_ps(s[0][rr]), a->accumulate);
    }
}

TGT512 INLINE void rows512_t(const int t, const strata_linear_args *a, long j0, long j1) {
    const long m = a->m;
    if (m == 1) {
        // one row: one weight row at a time, K unrolled twice, prefetching 8 KiB ahead for every
        // dtype (docs/kernels.md, "The one-row 16-bit kernel's reach", and for f32 "The f32
        // reach"); with 3 or more rows the four-row blocks below win, each block's four weight
        // streams prefetched 1 KiB ahead (docs/benchmarks.md, "Measurements behind the kernels'
        // constants": the AVX-512 walks)
        for (long j = j0; j < j1; j++) row512(t, 2, 1, 8192, a, j, 0);
        return;
    }
    if (m > 4) {
        // K tiles, x rows 32 at a time
        for (long r0 = 0; r0 < m; r0 += 32) {
            const long r1 = r0 + 32 < m ? r0 + 32 : m;
            long j = j0;
            if (r1 - r0 > 4) {
                // blocks of 6 weight rows, then 4, then 1; a remainder of 2 or 3 after the 6s is
                // taken as 8 or 9 (two 4s) rather than as single rows
                long n6 = (j1 - j) / 6;
                if (n6 > 0 && (j1 - j - 6 * n6) % 4 >= 2) n6--;
                for (long q = 0; q < n6; q++, j += 6) blkt512(t, 6, a, j, r0, r1);
                for (; j + 4 <= j1; j += 4) blkt512(t, 4, a, j, r0, r1);
                for (; j < j1; j++) blkt512(t, 1, a, j, r0, r1);
            } else {
                for (; j < j1; j++) for (long r = r0; r < r1; r++) blk512(t, 1, 1, a, j, r);
            }
        }
        return;
    }
    if (m == 2) {
        // two rows: the one-stream walk with both x rows against each weight vector, 8 KiB
        // ahead (faster than the 4 x 2 blocks; at 3 and 4 rows the blocks stay ahead:
        // docs/benchmarks.md, "Measurements behind the kernels' constants")
        for (long jj = j0; jj < j1; jj++) row512(t, 1, 2, 8192, a, jj, 0);
        return;
    }
    // 3 or 4 rows (1, 2 and 5 or more returned above): 4 x m blocks
    long j = j0;
    for (; j + 4 <= j1; j += 4) {
        if (m == 4) blk512(t, 4, 4, a, j, 0);
        else blk512(t, 4, 3, a, j, 0);
    }
    for (; j < j1; j++)
        for (long r = 0; r < m; r++) blk512(t, 1, 1, a, j, r);
}

TGT512 static void rows_avx512(const strata_linear_args *a, long j0, long j1) {
    switch (a->wtype) {
    case STRATA_W_F16: rows512_t(STRATA_W_F16, a, j0, j1); break;
    case STRATA_W_BF16: rows512_t(STRATA_W_BF16, a, j0, j1); break;
    default: rows512_t(STRATA_W_F32, a, j0, j1); break;
    }
}

TGT512 static float read_avx512(const float *p, long n, long pf) {
    __m512 s[8];
    for (int u = 0; u < 8; u++) s[u] = _mm512_setzero_ps();
    long i = 0;
    const long pfn = pf / 4;
    for (; i + 128 <= n; i += 128) {
        if (pf > 0)
            for (int u = 0; u < 8; u++) _mm_prefetch((const char *)(p + i + pfn + 16 * u), _MM_HINT_T0);
        for (int u = 0; u < 8; u++) s[u] = _mm512_add_ps(s[u], _mm512_loadu_ps(p + i + 16 * u));
    }
    for (int u = 1; u < 8; u++) s[0] = _mm512_add_ps(s[0], s[u]);
    float v = _mm512_reduce_add_ps(s[0]);
    for (; i < n; i++) v += p[i];
    return v;
}
#endif  // STRATA_X86

// ---- dispatch (the path itself is chosen in runtime.c) -----------------------------------

void strata_linear_rows_isa(int isa, const strata_linear_args *a, long j0, long j1) {
    if (j1 <= j0 || a->m <= 0) return;
    if (a->wtype >= STRATA_W_Q8_0) { strata_qlinear_rows_isa(isa, a, j0, j1); return; }
    switch (isa) {
#if STRATA_X86
    case STRATA_ISA_AVX512: rows_avx512(a, j0, j1); return;
    case STRATA_ISA_AVX2: rows_avx2(a, j0, j1); return;
#endif
    default: rows_portable(a, j0, j1); return;
    }
}

void strata_linear_rows(const strata_linear_args *a, long j0, long j1) {
    strata_linear_rows_isa(strata_kernels_isa(), a, j0, j1);
}

float strata_read_sum(int isa, const float *p, long count, long prefetch_bytes) {
    switch (isa) {
#if STRATA_X86
    case STRATA_ISA_AVX512: if (strata_isa_supported(isa)) return read_avx512(p, count, prefetch_bytes); break;
    case STRATA_ISA_AVX2: if (strata_isa_supported(isa)) return read_avx2(p, count, prefetch_bytes); break;
#endif
    default: break;
    }
    return read_portable(p, count);
}

// ---- softmax over one row -------------------------------------------------------------------
//
// x[0..n) <- exp(x - max) / sum, in place: the attention's causal softmax per query row. e^x as
// Swift's Ops.fastExp (range reduction by 1.5 * 2^23, degree-6 polynomial, relative error
// < 3e-7 on [-87, 88]; NaN in, NaN out). Lanes of 16 (AVX-512) or 8 (AVX2) for the max, the
// exponentials and the sum (a scalar chain of dependent adds was 9% of a bf16 prefill).

static void softmax_portable(float *x, long n) {
    float m = -INFINITY;
    for (long i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0;
    for (long i = 0; i < n; i++) { x[i] = exp_fast(x[i] - m); s += x[i]; }
    const float inv = 1.0f / s;
    for (long i = 0; i < n; i++) x[i] *= inv;
}

#if STRATA_X86
TGT512 static void softmax_avx512(float *x, long n) {
    __m512 mv = _mm512_set1_ps(-INFINITY);
    long i = 0;
    for (; i + 16 <= n; i += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
    float m = _mm512_reduce_max_ps(mv);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    const __m512 m16 = _mm512_set1_ps(m);
    __m512 sv = _mm512_setzero_ps();
    i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), m16));
        _mm512_storeu_ps(x + i, e);
        sv = _mm512_add_ps(sv, e);
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m16));
        _mm512_mask_storeu_ps(x + i, k, e);
        sv = _mm512_add_ps(sv, _mm512_maskz_mov_ps(k, e));
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sv));
    i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv));
    }
}
#endif

#if STRATA_X86
TGT2 static void softmax_avx2(float *x, long n) {
    __m256 mv = _mm256_set1_ps(-INFINITY);
    long i = 0;
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    float m = hmax8(mv);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    const __m256 m8 = _mm256_set1_ps(m);
    __m256 sv = _mm256_setzero_ps();
    float s = 0;
    i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8));
        _mm256_storeu_ps(x + i, e);
        sv = _mm256_add_ps(sv, e);
    }
    for (; i < n; i++) { x[i] = exp_fast(x[i] - m); s += x[i]; }
    const float invs = 1.0f / (hsum8(sv) + s);
    const __m256 inv = _mm256_set1_ps(invs);
    i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= invs;
}
#endif

void strata_softmax_row_isa(int isa, float *x, long n) {
    if (n <= 0) return;
#if STRATA_X86
    if (isa == STRATA_ISA_AVX512 && strata_isa_supported(isa)) { softmax_avx512(x, n); return; }
    if (isa == STRATA_ISA_AVX2 && strata_isa_supported(isa)) { softmax_avx2(x, n); return; }
#endif
    (void)isa;
    softmax_portable(x, n);
}

void strata_softmax_row(float *x, long n) { strata_softmax_row_isa(strata_kernels_isa(), x, n); }

// ---- the parallel linear -------------------------------------------------------------------

typedef struct {
    const strata_linear_args *a;
    int isa;
    long per;  // output rows per chunk (a multiple of 4)
} linear_job;

static void linear_chunk(void *ctx, long c) {
    const linear_job *job = (const linear_job *)ctx;
    long j0 = c * job->per, j1 = j0 + job->per;
    if (j1 > job->a->n) j1 = job->a->n;
    strata_linear_rows_isa(job->isa, job->a, j0, j1);
}

/// The chunking of one linear: `*per` output rows per chunk (a multiple of 4); returns the chunks.
static long linear_chunks(const strata_linear_args *a, int threads, long *per_out) {
    // chunks of >= 16 rows or ~32 KiB of weights, so a woken thread has work worth its wake-up;
    // sixteen times as many chunks as threads (each thread's range walked in order, an empty
    // thread stealing from the others'), so the thread that finishes last holds the other up by
    // at most one small chunk (docs/benchmarks.md, "Measurements behind the kernels' constants")
    long minRows = (32L << 10) / (a->k / qblock_elements(a->wtype) * qblock_bytes(a->wtype) + 1);
    if (minRows < 16) minRows = 16;
    long chunks = 16L * threads;
    if (chunks > a->n / minRows) chunks = a->n / minRows;
    if (chunks < 1) chunks = 1;
    long per = (a->n + chunks - 1) / chunks;
    per = (per + 3) & ~3L;
    *per_out = per;
    return (a->n + per - 1) / per;
}

void strata_linear(const strata_linear_args *a) {
    if (a->n <= 0 || a->m <= 0) return;
    long per;
    const long chunks = linear_chunks(a, strata_pool_threads(), &per);
    const int act = a->act >= 0 ? a->act : strata_activations();
    if (a->wtype >= STRATA_W_Q8_0 && act == STRATA_ACT_Q8) { strata_qlinear_q8(a, chunks, per); return; }
    linear_job job = {a, strata_kernels_isa(), per};
    if (chunks == 1) { linear_chunk(&job, 0); return; }
    strata_pool_run(linear_chunk, &job, chunks);
}

typedef struct {
    group_plan plan;
    int isa;
} linear_group_job;

static void linear_group_chunk(void *ctx, long c) {
    const linear_group_job *g = (const linear_group_job *)ctx;
    long j0, j1;
    const strata_linear_args *a = group_chunk(&g->plan, c, &j0, &j1);
    if (j1 > j0) strata_linear_rows_isa(g->isa, a, j0, j1);
}

INLINE int act_of(const strata_linear_args *a) { return a->act >= 0 ? a->act : strata_activations(); }

void strata_linear_group(const strata_linear_args *a, int count) {
    int shared = count >= 1 && count <= STRATA_LINEAR_GROUP && a[0].m > 0;
    for (int i = 0; shared && i < count; i++)
        shared = a[i].n > 0 && a[i].x == a[0].x && a[i].ldx == a[0].ldx && a[i].m == a[0].m && a[i].k == a[0].k &&
                 act_of(&a[i]) == act_of(&a[0]);
    if (!shared) {
        for (int i = 0; i < count; i++) strata_linear(&a[i]);
        return;
    }
    long chunks[STRATA_LINEAR_GROUP], per[STRATA_LINEAR_GROUP];
    const int threads = strata_pool_threads();
    for (int i = 0; i < count; i++) chunks[i] = linear_chunks(&a[i], threads, &per[i]);
    const int act = act_of(&a[0]);
    int quantized = 0, plain = 0;
    for (int i = 0; i < count; i++) { if (a[i].wtype >= STRATA_W_Q8_0) quantized++; else plain++; }
    if (quantized == count && act == STRATA_ACT_Q8) {
        // one job per weight type (x is quantized per type: Q4_K_M's q and k are Q4_K, its v
        // Q6_K in some layers), members in their order within each
        int done[STRATA_LINEAR_GROUP] = {0};
        for (int i = 0; i < count; i++) {
            if (done[i]) continue;
            strata_linear_args sub[STRATA_LINEAR_GROUP];
            long sc[STRATA_LINEAR_GROUP], sp[STRATA_LINEAR_GROUP];
            int n = 0;
            for (int j = i; j < count; j++)
                if (!done[j] && a[j].wtype == a[i].wtype) { sub[n] = a[j]; sc[n] = chunks[j]; sp[n] = per[j]; n++; done[j] = 1; }
            if (n == 1 || strata_qlinear_q8_group(sub, n, sc, sp) != 0)
                for (int j = 0; j < n; j++) strata_linear(&sub[j]);
        }
        return;
    }
    if (plain != count && act == STRATA_ACT_Q8) {
        for (int i = 0; i < count; i++) strata_linear(&a[i]);
        return;
    }
    linear_group_job g;
    group_plan_init(&g.plan, a, count, chunks, per);
    g.isa = strata_kernels_isa();
    strata_pool_run(linear_group_chunk, &g, g.plan.start[count]);
}

typedef struct {
    const strata_linear_args *a;
    int count, isa;
    long start[STRATA_LINEAR_BATCH + 1], per[STRATA_LINEAR_BATCH];
} linear_batch_job;

static void linear_batch_chunk(void *ctx, long c) {
    const linear_batch_job *g = (const linear_batch_job *)ctx;
    int lo = 0, hi = g->count - 1;
    while (lo < hi) {  // the member whose chunks hold c
        const int mid = (lo + hi + 1) / 2;
        if (g->start[mid] <= c) lo = mid; else hi = mid - 1;
    }
    const strata_linear_args *a = &g->a[lo];
    const long j0 = (c - g->start[lo]) * g->per[lo];
    const long j1 = j0 + g->per[lo] < a->n ? j0 + g->per[lo] : a->n;
    if (j1 <= j0) return;
    if (a->wtype >= STRATA_W_Q8_0 && act_of(a) == STRATA_ACT_Q8) strata_qlinear_q8_rows_isa(g->isa, a, j0, j1);
    else strata_linear_rows_isa(g->isa, a, j0, j1);
}

void strata_linear_batch(const strata_linear_args *a, int count) {
    while (count > STRATA_LINEAR_BATCH) {
        strata_linear_batch(a, STRATA_LINEAR_BATCH);
        a += STRATA_LINEAR_BATCH;
        count -= STRATA_LINEAR_BATCH;
    }
    if (count <= 0) return;
    // each member's share of about four chunks per thread, by its bytes of weights times rows
    // (at least one chunk, of at least 4 output rows; the 8-bit path quantizes x once per chunk,
    // so a member is cut only when there are fewer members than chunks wanted)
    const int threads = strata_pool_threads();
    double work[STRATA_LINEAR_BATCH], total = 0;
    for (int i = 0; i < count; i++) {
        const long rowBytes = a[i].k / qblock_elements(a[i].wtype) * qblock_bytes(a[i].wtype);
        work[i] = (double)(a[i].n > 0 ? a[i].n : 0) * (double)rowBytes * (double)(a[i].m > 0 ? a[i].m : 0);
        total += work[i];
    }
    if (total <= 0) return;
    linear_batch_job g;
    g.a = a;
    g.count = count;
    g.isa = strata_kernels_isa();
    g.start[0] = 0;
    for (int i = 0; i < count; i++) {
        long chunks = (long)(4.0 * threads * work[i] / total + 0.5);
        if (chunks > a[i].n / 4) chunks = a[i].n / 4;
        if (chunks < 1) chunks = 1;
        long per = (a[i].n + chunks - 1) / chunks;
        per = (per + 3) & ~3L;
        if (per < 1) per = 1;
        g.per[i] = per;
        g.start[i + 1] = g.start[i] + (work[i] > 0 ? (a[i].n + per - 1) / per : 0);
    }
    if (g.start[count] == 1) { linear_batch_chunk(&g, 0); return; }
    strata_pool_run(linear_batch_chunk, &g, g.start[count]);
}
