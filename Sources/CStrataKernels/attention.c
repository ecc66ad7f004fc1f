// One query row of attention (decode) against a run of cached keys and values: the scores
// q . k_j and the weighted sum of the value rows, for one head. The softmax between them is
// strata_softmax_row (kernels.c).
//
// Scores: keys sixteen (AVX-512) or eight (AVX2) at a time, one accumulator per key, the head
// dimension walked once with q loaded once per step for all of them; the accumulators then fold
// into one vector of sixteen (eight) sums by a shuffle tree (about 3 instructions per key, where a
// horizontal add per key is 8). Values: the output row in registers, 64 (32) floats at a time,
// each value row loaded once and multiplied by its broadcast weight. Swift's eight-lane loops
// they replace compiled to SSE with the output row stored and reloaded for every key; at 400
// keys they were 8% of a TinyLlama Q4_K_M decode step (perf record).
#define _GNU_SOURCE
#include "strata_kernels.h"
#include "common.h"

#include <math.h>
#include <stdlib.h>

// ---- portable path ---------------------------------------------------------------------------

static void scores_portable(const float *q, const float *k, long ldk, long n, long d, float scale, float *s) {
    for (long j = 0; j < n; j++) {
        const float *kr = k + j * ldk;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        long i = 0;
        for (; i + 4 <= d; i += 4) {
            a0 += q[i] * kr[i]; a1 += q[i + 1] * kr[i + 1];
            a2 += q[i + 2] * kr[i + 2]; a3 += q[i + 3] * kr[i + 3];
        }
        for (; i < d; i++) a0 += q[i] * kr[i];
        s[j] = ((a0 + a1) + (a2 + a3)) * scale;
    }
}

static void values_portable(const float *p, const float *v, long ldv, long n, long d, float *out, int accumulate) {
    if (!accumulate) for (long i = 0; i < d; i++) out[i] = 0;
    for (long j = 0; j < n; j++) {
        const float w = p[j], *vr = v + j * ldv;
        for (long i = 0; i < d; i++) out[i] += w * vr[i];
    }
}

/// Scores kept per head of a tile (the decode kernel's tile is at most this many keys).
#define ATTN_TILE_S 64

#if STRATA_X86
#define TGTA2 __attribute__((target("avx2,fma")))
#define TGTA5 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

// ---- AVX2 ------------------------------------------------------------------------------------

/// Eight vectors of partial sums -> the vector of their eight totals, in order.
TGTA2 INLINE __m256 fold8(const __m256 *a) {
    __m256 b[4];
    for (int p = 0; p < 4; p++)  // [key 2p: 4 partials, key 2p + 1: 4 partials]
        b[p] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * p], a[2 * p + 1], 0x20), _mm256_permute2f128_ps(a[2 * p], a[2 * p + 1], 0x31));
    // hadd twice: halves [keys 0 2 4 6], [keys 1 3 5 7]
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b[0], b[1]), _mm256_hadd_ps(b[2], b[3]));
    return _mm256_permutevar8x32_ps(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TGTA2 static void scores_avx2(const float *q, const float *k, long ldk, long n, long d, float scale, float *s) {
    const long dm = d & ~7L;
    const __m256 sc = _mm256_set1_ps(scale);
    long j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 a[8];
        for (int t = 0; t < 8; t++) a[t] = _mm256_setzero_ps();
        const float *kr = k + j * ldk;
        // the eight rows' pointers made once: computed in the loop, clang chained eight dependent
        // adds per step (one FMA per cycle at most)
        const float *r0 = kr, *r1 = kr + ldk, *r2 = kr + 2 * ldk, *r3 = kr + 3 * ldk;
        const float *r4 = kr + 4 * ldk, *r5 = kr + 5 * ldk, *r6 = kr + 6 * ldk, *r7 = kr + 7 * ldk;
        for (long i = 0; i < dm; i += 8) {
            const __m256 qv = _mm256_loadu_ps(q + i);
            a[0] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r0 + i), a[0]);
            a[1] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r1 + i), a[1]);
            a[2] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r2 + i), a[2]);
            a[3] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r3 + i), a[3]);
            a[4] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r4 + i), a[4]);
            a[5] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r5 + i), a[5]);
            a[6] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r6 + i), a[6]);
            a[7] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r7 + i), a[7]);
        }
        __m256 r = _mm256_mul_ps(fold8(a), sc);
        if (dm < d) {
            float tail[8];
            for (int t = 0; t < 8; t++) {
                float x = 0;
                for (long i = dm; i < d; i++) x += q[i] * kr[t * ldk + i];
                tail[t] = x * scale;
            }
            r = _mm256_add_ps(r, _mm256_loadu_ps(tail));
        }
        _mm256_storeu_ps(s + j, r);
    }
    if (j < n) scores_portable(q, k + j * ldk, ldk, n - j, d, scale, s + j);
}

TGTA2 static void values_avx2(const float *p, const float *v, long ldv, long n, long d, float *out, int accumulate) {
    long c = 0;
    for (; c + 32 <= d; c += 32) {
        __m256 a[4], b[4];
        for (int u = 0; u < 4; u++) { a[u] = accumulate ? _mm256_loadu_ps(out + c + 8 * u) : _mm256_setzero_ps(); b[u] = _mm256_setzero_ps(); }
        long j = 0;
        for (; j + 2 <= n; j += 2) {  // two keys per step, two sets of accumulators
            const float *v0 = v + j * ldv + c, *v1 = v0 + ldv;
            const __m256 w0 = _mm256_set1_ps(p[j]), w1 = _mm256_set1_ps(p[j + 1]);
            for (int u = 0; u < 4; u++) {
                a[u] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(v0 + 8 * u), a[u]);
                b[u] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(v1 + 8 * u), b[u]);
            }
        }
        for (; j < n; j++) {
            const __m256 w0 = _mm256_set1_ps(p[j]);
            for (int u = 0; u < 4; u++) a[u] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(v + j * ldv + c + 8 * u), a[u]);
        }
        for (int u = 0; u < 4; u++) _mm256_storeu_ps(out + c + 8 * u, _mm256_add_ps(a[u], b[u]));
    }
    for (; c < d; c += 8) {
        if (c + 8 > d) {
            // the last d % 8 columns
            for (long i = c; i < d; i++) {
                float x = accumulate ? out[i] : 0;
                for (long j = 0; j < n; j++) x += p[j] * v[j * ldv + i];
                out[i] = x;
            }
            break;
        }
        __m256 a = accumulate ? _mm256_loadu_ps(out + c) : _mm256_setzero_ps();
        for (long j = 0; j < n; j++) a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * ldv + c), a);
        _mm256_storeu_ps(out + c, a);
    }
}

/// Two heads' scores over the same keys (decode attention's query heads of one kv head): four
/// keys at a time, each K vector loaded once for both heads (eight accumulators, folded together:
/// lanes 0-3 head 0's four keys, 4-7 head 1's). A key's row is read from L1 once per pair of
/// heads, not once per head.
TGTA2 static void scores2_avx2(const float *q0, const float *q1, const float *k, long ldk, long n, long d, float scale, float *s0, float *s1) {
    const long dm = d & ~7L;
    const __m256 sc = _mm256_set1_ps(scale);
    long j = 0;
    for (; j + 4 <= n && dm == d; j += 4) {
        __m256 a[8];
        for (int t = 0; t < 8; t++) a[t] = _mm256_setzero_ps();
        const float *r0 = k + j * ldk, *r1 = r0 + ldk, *r2 = r1 + ldk, *r3 = r2 + ldk;
        for (long i = 0; i < d; i += 8) {
            const __m256 x0 = _mm256_loadu_ps(q0 + i), x1 = _mm256_loadu_ps(q1 + i);
            const __m256 k0 = _mm256_loadu_ps(r0 + i), k1 = _mm256_loadu_ps(r1 + i);
            const __m256 k2 = _mm256_loadu_ps(r2 + i), k3 = _mm256_loadu_ps(r3 + i);
            a[0] = _mm256_fmadd_ps(x0, k0, a[0]); a[1] = _mm256_fmadd_ps(x0, k1, a[1]);
            a[2] = _mm256_fmadd_ps(x0, k2, a[2]); a[3] = _mm256_fmadd_ps(x0, k3, a[3]);
            a[4] = _mm256_fmadd_ps(x1, k0, a[4]); a[5] = _mm256_fmadd_ps(x1, k1, a[5]);
            a[6] = _mm256_fmadd_ps(x1, k2, a[6]); a[7] = _mm256_fmadd_ps(x1, k3, a[7]);
        }
        const __m256 r = _mm256_mul_ps(fold8(a), sc);
        _mm_storeu_ps(s0 + j, _mm256_castps256_ps128(r));
        _mm_storeu_ps(s1 + j, _mm256_extractf128_ps(r, 1));
    }
    if (j < n) {
        scores_avx2(q0, k + j * ldk, ldk, n - j, d, scale, s0 + j);
        scores_avx2(q1, k + j * ldk, ldk, n - j, d, scale, s1 + j);
    }
}

/// Two heads' weighted sums of the same value rows (each V vector loaded once for both):
/// out_h[i] += sum_j p_h[j] v_j[i], 32 columns at a time (eight accumulators).
TGTA2 static void values2_avx2(const float *p0, const float *p1, const float *v, long ldv, long n, long d, float *o0, float *o1) {
    long c = 0;
    for (; c + 32 <= d; c += 32) {
        __m256 a[4], b[4];
        for (int u = 0; u < 4; u++) { a[u] = _mm256_loadu_ps(o0 + c + 8 * u); b[u] = _mm256_loadu_ps(o1 + c + 8 * u); }
        for (long j = 0; j < n; j++) {
            const float *vr = v + j * ldv + c;
            const __m256 w0 = _mm256_broadcast_ss(p0 + j), w1 = _mm256_broadcast_ss(p1 + j);
            for (int u = 0; u < 4; u++) {
                const __m256 x = _mm256_loadu_ps(vr + 8 * u);
                a[u] = _mm256_fmadd_ps(w0, x, a[u]);
                b[u] = _mm256_fmadd_ps(w1, x, b[u]);
            }
        }
        for (int u = 0; u < 4; u++) { _mm256_storeu_ps(o0 + c + 8 * u, a[u]); _mm256_storeu_ps(o1 + c + 8 * u, b[u]); }
    }
    if (c < d) {
        values_avx2(p0, v + c, ldv, n, d - c, o0 + c, 1);
        values_avx2(p1, v + c, ldv, n, d - c, o1 + c, 1);
    }
}

/// Rows r[0..8) of an 8x8 block -> its columns, in place.
TGTA2 INLINE void transpose8(__m256 *r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/// A tile's K rows (kw: nt rows of d) -> kt[i * tp + j] = K[j][i], keys padded with zeros to a
/// multiple of 8 (tp, the row stride of kt, at least that).
TGTA2 static void kt_from_rows(const float *kw, long nt, long d, float *kt, long tp) {
    const long ntp = (nt + 7) & ~7L;
    for (long jb = 0; jb < ntp; jb += 8) {
        long ib = 0;
        for (; ib + 8 <= d; ib += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; t++) r[t] = jb + t < nt ? _mm256_loadu_ps(kw + (jb + t) * d + ib) : _mm256_setzero_ps();
            transpose8(r);
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(kt + (ib + t) * tp + jb, r[t]);
        }
        for (; ib < d; ib++)
            for (int t = 0; t < 8; t++) kt[ib * tp + jb + t] = jb + t < nt ? kw[(jb + t) * d + ib] : 0.0f;
    }
}

/// HB heads' scores over a transposed tile, 16 keys at a time: per step of the head dimension two
/// vectors of K (16 keys) and each head's query value broadcast: no horizontal sums, 2 * HB
/// independent accumulators. s: head h's scores at s + h * ATTN_TILE_S.
TGTA2 INLINE void scores_kt_hb(const int HB, const float *q, long d, const float *kt, long tp, long ntp, float scale, float *s) {
    const __m256 sc = _mm256_set1_ps(scale);
    long j = 0;
    for (; j + 16 <= ntp; j += 16) {
        __m256 a[4][2];
        UNROLL for (int h = 0; h < HB; h++) { a[h][0] = _mm256_setzero_ps(); a[h][1] = _mm256_setzero_ps(); }
        for (long i = 0; i < d; i++) {
            const __m256 k0 = _mm256_loadu_ps(kt + i * tp + j), k1 = _mm256_loadu_ps(kt + i * tp + j + 8);
            UNROLL for (int h = 0; h < HB; h++) {
                const __m256 w = _mm256_broadcast_ss(q + h * d + i);
                a[h][0] = _mm256_fmadd_ps(w, k0, a[h][0]);
                a[h][1] = _mm256_fmadd_ps(w, k1, a[h][1]);
            }
        }
        UNROLL for (int h = 0; h < HB; h++) {
            _mm256_storeu_ps(s + h * ATTN_TILE_S + j, _mm256_mul_ps(a[h][0], sc));
            _mm256_storeu_ps(s + h * ATTN_TILE_S + j + 8, _mm256_mul_ps(a[h][1], sc));
        }
    }
    if (j < ntp) {
        __m256 a[4];
        UNROLL for (int h = 0; h < HB; h++) a[h] = _mm256_setzero_ps();
        for (long i = 0; i < d; i++) {
            const __m256 k0 = _mm256_loadu_ps(kt + i * tp + j);
            UNROLL for (int h = 0; h < HB; h++) a[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + h * d + i), k0, a[h]);
        }
        UNROLL for (int h = 0; h < HB; h++) _mm256_storeu_ps(s + h * ATTN_TILE_S + j, _mm256_mul_ps(a[h], sc));
    }
}

/// nh heads (q: head h at q + h * d) over a transposed tile of ntp keys, four heads at a time.
TGTA2 static void scores_kt_avx2(const float *q, long nh, long d, const float *kt, long tp, long ntp, float scale, float *s) {
    long h = 0;
    for (; h + 4 <= nh; h += 4) scores_kt_hb(4, q + h * d, d, kt, tp, ntp, scale, s + h * ATTN_TILE_S);
    switch (nh - h) {
    case 3: scores_kt_hb(3, q + h * d, d, kt, tp, ntp, scale, s + h * ATTN_TILE_S); break;
    case 2: scores_kt_hb(2, q + h * d, d, kt, tp, ntp, scale, s + h * ATTN_TILE_S); break;
    case 1: scores_kt_hb(1, q + h * d, d, kt, tp, ntp, scale, s + h * ATTN_TILE_S); break;
    default: break;
    }
}

// ---- AVX-512 ---------------------------------------------------------------------------------

/// Sixteen vectors of partial sums -> the vector of their sixteen totals, in order.
TGTA5 INLINE __m512 fold16(const __m512 *a) {
    __m512 b[8], c[4], e[2];
    for (int p = 0; p < 8; p++)  // quarters [key 2p, key 2p, key 2p + 1, key 2p + 1]
        b[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0x44), _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0xEE));
    for (int p = 0; p < 4; p++)  // quarters [keys 4p, 4p + 1, 4p + 2, 4p + 3]
        c[p] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * p], b[2 * p + 1], 0x88), _mm512_shuffle_f32x4(b[2 * p], b[2 * p + 1], 0xDD));
    for (int p = 0; p < 2; p++)  // quarter Q: [key 8p + Q, key 8p + 4 + Q, the same]
        e[p] = _mm512_add_ps(_mm512_unpacklo_ps(c[2 * p], c[2 * p + 1]), _mm512_unpackhi_ps(c[2 * p], c[2 * p + 1]));
    // quarter Q: [key Q, key 8 + Q, key 4 + Q, key 12 + Q]
    const __m512 f = _mm512_add_ps(_mm512_unpacklo_ps(e[0], e[1]), _mm512_unpackhi_ps(e[0], e[1]));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15), f);
}

TGTA5 static void scores_avx512(const float *q, const float *k, long ldk, long n, long d, float scale, float *s) {
    const long dm = d & ~15L;
    const __mmask16 tm = (__mmask16)((1u << (d - dm)) - 1);
    const __m512 sc = _mm512_set1_ps(scale);
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 a[16];
        for (int t = 0; t < 16; t++) a[t] = _mm512_setzero_ps();
        const float *kr = k + j * ldk;
        for (long i = 0; i < dm; i += 16) {
            const __m512 qv = _mm512_loadu_ps(q + i);
            for (int t = 0; t < 16; t++) a[t] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kr + t * ldk + i), a[t]);
        }
        if (tm) {
            const __m512 qv = _mm512_maskz_loadu_ps(tm, q + dm);
            for (int t = 0; t < 16; t++) a[t] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tm, kr + t * ldk + dm), a[t]);
        }
        _mm512_storeu_ps(s + j, _mm512_mul_ps(fold16(a), sc));
    }
    for (; j < n; j++) {
        const float *kr = k + j * ldk;
        __m512 a = _mm512_setzero_ps();
        for (long i = 0; i < dm; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(kr + i), a);
        if (tm) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, q + dm), _mm512_maskz_loadu_ps(tm, kr + dm), a);
        s[j] = _mm512_reduce_add_ps(a) * scale;
    }
}

TGTA5 static void values_avx512(const float *p, const float *v, long ldv, long n, long d, float *out, int accumulate) {
    for (long c = 0; c < d; c += 64) {
        // up to four vectors of the output row; masks for the columns past d
        __mmask16 m[4];
        for (int u = 0; u < 4; u++) {
            const long left = d - c - 16 * u;
            m[u] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
        }
        __m512 a[4], b[4];
        for (int u = 0; u < 4; u++) { a[u] = accumulate ? _mm512_maskz_loadu_ps(m[u], out + c + 16 * u) : _mm512_setzero_ps(); b[u] = _mm512_setzero_ps(); }
        long j = 0;
        for (; j + 2 <= n; j += 2) {  // two keys per step, two sets of accumulators
            const float *v0 = v + j * ldv + c, *v1 = v0 + ldv;
            const __m512 w0 = _mm512_set1_ps(p[j]), w1 = _mm512_set1_ps(p[j + 1]);
            for (int u = 0; u < 4; u++) {
                a[u] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m[u], v0 + 16 * u), a[u]);
                b[u] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m[u], v1 + 16 * u), b[u]);
            }
        }
        for (; j < n; j++) {
            const __m512 w0 = _mm512_set1_ps(p[j]);
            for (int u = 0; u < 4; u++) a[u] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m[u], v + j * ldv + c + 16 * u), a[u]);
        }
        for (int u = 0; u < 4; u++) _mm512_mask_storeu_ps(out + c + 16 * u, m[u], _mm512_add_ps(a[u], b[u]));
    }
}
#endif

// ---- dispatch --------------------------------------------------------------------------------

void strata_attn_scores_isa(int isa, const float *q, const float *k, long ldk, long n, long d, float scale, float *scores) {
    if (n <= 0 || d <= 0) return;
#if STRATA_X86
    if (isa == STRATA_ISA_AVX512 && strata_isa_supported(isa)) { scores_avx512(q, k, ldk, n, d, scale, scores); return; }
    if (isa == STRATA_ISA_AVX2 && strata_isa_supported(isa)) { scores_avx2(q, k, ldk, n, d, scale, scores); return; }
#endif
    (void)isa;
    scores_portable(q, k, ldk, n, d, scale, scores);
}

void strata_attn_values_isa(int isa, const float *p, const float *v, long ldv, long n, long d, float *out, int accumulate) {
    if (d <= 0) return;
    if (n <= 0) { if (!accumulate) for (long i = 0; i < d; i++) out[i] = 0; return; }
#if STRATA_X86
    if (isa == STRATA_ISA_AVX512 && strata_isa_supported(isa)) { values_avx512(p, v, ldv, n, d, out, accumulate); return; }
    if (isa == STRATA_ISA_AVX2 && strata_isa_supported(isa)) { values_avx2(p, v, ldv, n, d, out, accumulate); return; }
#endif
    (void)isa;
    values_portable(p, v, ldv, n, d, out, accumulate);
}

void strata_attn_scores(const float *q, const float *k, long ldk, long n, long d, float scale, float *scores) {
    strata_attn_scores_isa(strata_kernels_isa(), q, k, ldk, n, d, scale, scores);
}

void strata_attn_values(const float *p, const float *v, long ldv, long n, long d, float *out, int accumulate) {
    strata_attn_values_isa(strata_kernels_isa(), p, v, ldv, n, d, out, accumulate);
}

// ---- KV rows stored as f16, bf16 or q8_0, widened to f32 --------------------------------------

static void kv_row_portable(int type, const uint8_t *src, float *dst, long d) {
    switch (type) {
    case STRATA_W_F16:
        for (long i = 0; i < d; i++) dst[i] = f16_at(src + 2 * i);
        break;
    case STRATA_W_BF16:
        for (long i = 0; i < d; i++) { uint16_t h; memcpy(&h, src + 2 * i, 2); dst[i] = bf16_to_f32(h); }
        break;
    case STRATA_W_Q8_0:
        for (long b = 0; b < d / 32; b++, src += 34) {
            const float sc = f16_at(src);
            const int8_t *q = (const int8_t *)(src + 2);
            for (int i = 0; i < 32; i++) dst[32 * b + i] = sc * (float)q[i];
        }
        break;
    default:
        memcpy(dst, src, (size_t)d * sizeof(float));
    }
}

#if STRATA_X86
/// AVX2 and F16C: eight values per instruction (AVX-512 hosts run it too).
__attribute__((target("avx2,fma,f16c"))) static void kv_row_avx2(int type, const uint8_t *src, float *dst, long d) {
    long i = 0;
    switch (type) {
    case STRATA_W_F16:
        for (; i + 8 <= d; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
        for (; i < d; i++) dst[i] = f16_at(src + 2 * i);
        break;
    case STRATA_W_BF16:
        for (; i + 8 <= d; i += 8) {
            const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + 2 * i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
        }
        for (; i < d; i++) { uint16_t h; memcpy(&h, src + 2 * i, 2); dst[i] = bf16_to_f32(h); }
        break;
    case STRATA_W_Q8_0:
        for (long b = 0; b < d / 32; b++, src += 34) {
            const __m256 sc = _mm256_set1_ps(f16c_at(src));
            for (int u = 0; u < 4; u++) {
                const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(src + 2 + 8 * u)));
                _mm256_storeu_ps(dst + 32 * b + 8 * u, _mm256_mul_ps(sc, _mm256_cvtepi32_ps(q)));
            }
        }
        break;
    default:
        memcpy(dst, src, (size_t)d * sizeof(float));
    }
}

/// `rows` stored rows ld bytes apart into f32 rows of d floats (one call per run of keys: a call
/// per row of 64 values was a third of the widening's time).
__attribute__((target("avx2,fma,f16c"))) static void kv_rows_avx2(int type, const uint8_t *src, long ld, long rows, float *dst, long d) {
    for (long r = 0; r < rows; r++) kv_row_avx2(type, src + r * ld, dst + r * d, d);
}
#endif

/// `rows` stored rows ld bytes apart as f32 rows of d floats (isa is a path this CPU runs).
static void kv_rows(int isa, int type, const uint8_t *src, long ld, long rows, float *dst, long d) {
#if STRATA_X86
    if (isa != STRATA_ISA_PORTABLE) { kv_rows_avx2(type, src, ld, rows, dst, d); return; }
#endif
    (void)isa;
    for (long r = 0; r < rows; r++) kv_row_portable(type, src + r * ld, dst + r * d, d);
}

/// Whether d values of `type` are whole rows the kernels read (q8_0: whole blocks).
static int kv_shape_ok(int type, long d) {
    switch (type) {
    case STRATA_W_F32: case STRATA_W_F16: case STRATA_W_BF16: return 1;
    case STRATA_W_Q8_0: return d % 32 == 0;
    default: return 0;
    }
}

void strata_kv_gather(int isa, int type, const void *src, long ld, const long *table, long block, long block_stride,
                      long first, long n, long d, float *dst) {
    if (d <= 0 || !kv_shape_ok(type, d)) return;
    if (!strata_isa_supported(isa)) isa = STRATA_ISA_PORTABLE;
    for (long j = first; j < n;) {
        const long off = table ? table[j / block] * block_stride + (j % block) * ld : j * ld;
        const long left = table ? block - j % block : n - j, rows = left < n - j ? left : n - j;
        kv_rows(isa, type, (const uint8_t *)src + off, ld, rows, dst + (j - first) * d, d);
        j += rows;
    }
}

// ---- one query row, a group of heads, online softmax ------------------------------------------

/// Keys per tile: up to 64 rows of K and of V, widened (or, for f32, copied) into contiguous
/// scratch that stays in L1 while each head of the group reads it. Copied even for f32: a kv
/// head's slice of pool rows kvDim * 4 bytes apart falls into a few L1 sets (rows 2 KiB apart
/// use 8 of 64), so read in place the tile did not survive from one head to the next.
#define ATTN_TILE 64
/// Heads per pass over the keys (more heads share a kv head only in MQA-like models: passes of 16).
#define ATTN_HEADS 16
/// Floats of one tile's K (and as many of V) on the stack: tiles of min(64, 4096 / d) keys.
#define ATTN_WIDE 4096
/// Floats of the transposed K tile (head dim x keys rounded up to 8).
#define ATTN_KT 4608

/// Keys [j, end) that lie in one block from key j on (all of them without a table): their count,
/// and in *koff, *voff the byte offsets of key j's rows from k and v.
static long key_run(const strata_attn_decode_args *a, long j, long end, long *koff, long *voff) {
    if (!a->table) { *koff = j * a->ld; *voff = j * a->ldv; return end - j; }
    const long left = a->block - j % a->block, base = a->table[j / a->block] * a->block_stride;
    *koff = base + (j % a->block) * a->ld;
    *voff = base + (j % a->block) * a->ldv;
    return left < end - j ? left : end - j;
}

/// One tile of one head's scores s[0, nt) -> their weights e^(s - m'), where m' is the running
/// max m raised to the tile's; returns the factor e^(m - m') the earlier weights and output take,
/// and updates m and the running sum l.
static float tile_softmax_portable(float *s, long nt, float *m, float *l) {
    float mt = *m;
    for (long j = 0; j < nt; j++) mt = s[j] > mt ? s[j] : mt;
    const float corr = *m == -INFINITY ? 0.0f : exp_fast(*m - mt);
    float sum = 0;
    for (long j = 0; j < nt; j++) { s[j] = exp_fast(s[j] - mt); sum += s[j]; }
    *l = *l * corr + sum;
    *m = mt;
    return corr;
}

#if STRATA_X86
__attribute__((target("avx2,fma"))) static float tile_softmax_avx2(float *s, long nt, float *m, float *l) {
    __m256 mv = _mm256_set1_ps(*m);
    long j = 0;
    for (; j + 8 <= nt; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + j));
    float mt = hmax8(mv);
    for (; j < nt; j++) mt = s[j] > mt ? s[j] : mt;
    // a NaN score: the max skipped it (max_ps returns its second operand); the exponentials carry it
    const float corr = *m == -INFINITY ? 0.0f : exp_fast(*m - mt);
    const __m256 m8 = _mm256_set1_ps(mt);
    __m256 sv = _mm256_setzero_ps();
    j = 0;
    for (; j + 8 <= nt; j += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), m8));
        _mm256_storeu_ps(s + j, e);
        sv = _mm256_add_ps(sv, e);
    }
    float sum = hsum8(sv);
    for (; j < nt; j++) { s[j] = exp_fast(s[j] - mt); sum += s[j]; }
    *l = *l * corr + sum;
    *m = mt;
    return corr;
}
#endif

static float tile_softmax(int isa, float *s, long nt, float *m, float *l) {
#if STRATA_X86
    if (isa != STRATA_ISA_PORTABLE) return tile_softmax_avx2(s, nt, m, l);
#endif
    (void)isa;
    return tile_softmax_portable(s, nt, m, l);
}

#if STRATA_X86
/// `rows` f16 K rows (ld bytes apart, d a multiple of 8) widened and transposed in one pass into
/// kt[i * tp + j] (j < rows; the last group of eight padded with zeros): no row-major copy of the
/// tile's K written and read back.
__attribute__((target("avx2,fma,f16c"))) static void kt_from_f16(const uint8_t *src, long ld, long rows, long d, float *kt, long tp) {
    for (long rb = 0; rb < rows; rb += 8) {
        const long n8 = rows - rb < 8 ? rows - rb : 8;
        for (long ib = 0; ib < d; ib += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; t++)
                r[t] = t < n8 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + (rb + t) * ld + 2 * ib))) : _mm256_setzero_ps();
            transpose8(r);
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(kt + (ib + t) * tp + rb, r[t]);
        }
    }
}
#endif

/// Heads [h0, h1) of the group; kw/vw: room for `tile` rows of d floats of K and of V.
static void attn_decode_heads(int isa, const strata_attn_decode_args *a, long h0, long h1, float *kw, float *vw, long tile) {
    const long d = a->d, nh = h1 - h0;
    float s[ATTN_HEADS * ATTN_TILE], m[ATTN_HEADS], l[ATTN_HEADS];
#if STRATA_X86
    float kt[ATTN_KT];
#endif
    for (long h = 0; h < nh; h++) {
        m[h] = -INFINITY; l[h] = 0;
        for (long i = 0; i < d; i++) a->out[(h0 + h) * d + i] = 0;
    }
    for (long t0 = a->first; t0 < a->n; t0 += tile) {
        const long t1 = t0 + tile < a->n ? t0 + tile : a->n, nt = t1 - t0;
        // scores: on x86 over the tile transposed (keys along the vector: no horizontal sums),
        // four heads at a time; where the transposed tile does not fit, heads in pairs. f16 keys
        // go straight into the transposed tile where every run of the tile starts a group of eight
        long h = 0;
        int k_fused = 0;
#if STRATA_X86
        const long tp = (tile + 7) & ~7L;
        const int transposed = isa != STRATA_ISA_PORTABLE && d * tp <= ATTN_KT;
        k_fused = transposed && a->type == STRATA_W_F16 && d % 8 == 0 && (!a->table || (t0 % 8 == 0 && a->block % 8 == 0));
#endif
        // the tile's keys (unless fused above) and values widened once for every head of the group
        for (long j = t0; j < t1;) {
            long koff, voff;
            const long rows = key_run(a, j, t1, &koff, &voff);
#if STRATA_X86
            if (k_fused) kt_from_f16((const uint8_t *)a->k + koff, a->ld, rows, d, kt + (j - t0), tp);
            else
#endif
                kv_rows(isa, a->type, (const uint8_t *)a->k + koff, a->ld, rows, kw + (j - t0) * d, d);
            kv_rows(isa, a->type, (const uint8_t *)a->v + voff, a->ldv, rows, vw + (j - t0) * d, d);
            j += rows;
        }
#if STRATA_X86
        if (transposed) {
            if (!k_fused) kt_from_rows(kw, nt, d, kt, tp);
            scores_kt_avx2(a->q + h0 * d, nh, d, kt, tp, (nt + 7) & ~7L, a->scale, s);
            h = nh;
        }
        if (isa != STRATA_ISA_PORTABLE)
            for (; h + 2 <= nh; h += 2)
                scores2_avx2(a->q + (h0 + h) * d, a->q + (h0 + h + 1) * d, kw, d, nt, d, a->scale, s + h * ATTN_TILE, s + (h + 1) * ATTN_TILE);
#endif
        for (; h < nh; h++) strata_attn_scores_isa(isa, a->q + (h0 + h) * d, kw, d, nt, d, a->scale, s + h * ATTN_TILE);
        for (h = 0; h < nh; h++) {
            float *sh = s + h * ATTN_TILE, *oh = a->out + (h0 + h) * d;
            if (a->softcap > 0) {
                const float inv = 1.0f / a->softcap;
                for (long j = 0; j < nt; j++) sh[j] = tanhf(sh[j] * inv) * a->softcap;
            }
            // the earlier keys' weights and output rescaled to the new max (e^0 = 1 when it held)
            const float corr = tile_softmax(isa, sh, nt, &m[h], &l[h]);
            if (corr != 1.0f) for (long i = 0; i < d; i++) oh[i] *= corr;
        }
        h = 0;
#if STRATA_X86
        if (isa != STRATA_ISA_PORTABLE)
            for (; h + 2 <= nh; h += 2)
                values2_avx2(s + h * ATTN_TILE, s + (h + 1) * ATTN_TILE, vw, d, nt, d, a->out + (h0 + h) * d, a->out + (h0 + h + 1) * d);
#endif
        for (; h < nh; h++) strata_attn_values_isa(isa, s + h * ATTN_TILE, vw, d, nt, d, a->out + (h0 + h) * d, 1);
    }
    for (long h = 0; h < nh; h++) {
        if (a->sinks) {
            // the sink's term e^(sink - max) in the denominator, the max moved to the sink when it
            // is larger (no keys: m = -inf, the weights and the output become 0)
            const float sink = a->sinks[h0 + h];
            float *oh = a->out + (h0 + h) * d;
            if (sink > m[h]) {
                const float corr = expf(m[h] - sink);
                for (long i = 0; i < d; i++) oh[i] *= corr;
                l[h] = l[h] * corr + 1.0f;
                m[h] = sink;
            } else {
                l[h] += expf(sink - m[h]);
            }
        }
        if (l[h] == 0) continue;  // no keys: zeros
        const float inv = 1.0f / l[h];
        float *oh = a->out + (h0 + h) * d;
        for (long i = 0; i < d; i++) oh[i] *= inv;
    }
}

void strata_attn_decode_isa(int isa, const strata_attn_decode_args *a) {
    if (a->d <= 0 || a->group <= 0) return;
    if (!kv_shape_ok(a->type, a->d)) {  // the caller checks the type against the head size first
        for (long i = 0; i < a->group * a->d; i++) a->out[i] = NAN;
        return;
    }
    if (!strata_isa_supported(isa)) isa = STRATA_ISA_PORTABLE;
    float kbuf[ATTN_WIDE], vbuf[ATTN_WIDE];
    float *kw = kbuf, *vw = vbuf, *heap = NULL;
    long tile = ATTN_WIDE / a->d < ATTN_TILE ? ATTN_WIDE / a->d : ATTN_TILE;
    if (a->d > ATTN_WIDE) {  // heads wider than 4096: one key at a time
        heap = malloc(2 * (size_t)a->d * sizeof(float));
        if (!heap) { for (long i = 0; i < a->group * a->d; i++) a->out[i] = NAN; return; }
        kw = heap; vw = heap + a->d; tile = 1;
    }
    for (long h0 = 0; h0 < a->group; h0 += ATTN_HEADS)
        attn_decode_heads(isa, a, h0, h0 + ATTN_HEADS < a->group ? h0 + ATTN_HEADS : a->group, kw, vw, tile);
    free(heap);
}

void strata_attn_decode(const strata_attn_decode_args *a) { strata_attn_decode_isa(strata_kernels_isa(), a); }
