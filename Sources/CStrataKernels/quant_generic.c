// The generic kernels: every quantized type without kernels of its own (the traits table's
// `specialized` is 0) runs these, through its `unpack` (qtypes.h): a weight row is decoded once
// per call into one byte code per weight and a scale and offset per 32 weights, in the thread's
// buffer (L1/L2: 1.06 bytes per weight), and every x row is multiplied against it.
//
//   f32 activations (exact): on AVX2 the row's floats d * c + m (a multiplication, then an
//     addition: the type's dequantization to the bit), dotted with x in f32; the portable path
//     is quant.c's block-by-block dequantization.
//   8-bit activations: x quantized per 32 (dx = max|x| / 127, q = round(x / dx), as quant_q8.c),
//     per 32 weights s: d_s dx_s sum(c q) in integers, plus m_s dx_s sum(q) where the type has
//     offsets. The portable code is the definition; AVX2 (vpmaddubsw on codes in [0, 63] as
//     they are, else on |c| and q signed by c; vpmaddwd; one FMA per 32 weights and row against
//     d_s dx_s formed eight at a time) gives the same integers and differs only in the order of
//     the f32 additions. The AVX-512 path runs the AVX2 code.
#define _GNU_SOURCE
#include "strata_kernels.h"
#include "common.h"


static _Thread_local strata_tls_buf t_gw;  // a worker's unpacked weight row
static _Thread_local strata_tls_buf t_gx;  // the caller's quantized x rows

/// One unpacked weight row: codes, per 32 a scale and an offset; `f` its floats (f32 path) or,
/// on the 8-bit path, the scale times x's scale for up to four x rows (`ds`, 4 runs of k / 32).
typedef struct { int8_t *c; float *d, *m, *f, *ds; } wrow;

/// The thread's buffer for one unpacked row of k weights.
static int wrow_buffer(long k, int floats, wrow *u) {
    const size_t codes = ((size_t)k + 63) & ~(size_t)63, per = ((size_t)(k / 32) * 4 + 63) & ~(size_t)63;
    char *p = (char *)strata_tls_grow(&t_gw, STRATA_TLS_GW, codes + 2 * per + (floats ? (size_t)k * 4 : 4 * per));
    if (!p) return -1;
    u->c = (int8_t *)p;
    u->d = (float *)(p + codes);
    u->m = (float *)(p + codes + per);
    u->f = floats ? (float *)(p + codes + 2 * per) : NULL;
    u->ds = floats ? NULL : (float *)(p + codes + 2 * per);
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
#if STRATA_X86
    wrow u;
    // AVX2: the row's floats from the unpacked codes; portable (or no memory for a row): block by
    // block through the type's dequant (quant.c), the same values
    if (use_avx2(isa) && wrow_buffer(a->k, 1, &u) == 0) { frows_avx2(a, j0, j1, &u); return; }
#endif
    strata_qrows_portable(a, j0, j1);
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
        for (long s = 0; s < ns; s++) {
            int8_t *qs = q + r * k + 32 * s;
            const float d = quantize_block(a->x + r * a->ldx + 32 * s, 32, qs);
            int sum = 0;
            for (int i = 0; i < 32; i++) sum += qs[i];
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
/// sum over i < n of a[i] * b[i] (the offsets' term).
TGT2 INLINE float dot_f32(const float *a, const float *b, long n) {
    __m256 acc = _mm256_setzero_ps();
    long i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum8(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/// 32 codes times 32 of x, as eight int32 lanes: unsigned codes (U) straight into vpmaddubsw,
/// signed ones as |c| against q with c's sign.
TGT2 INLINE __m256i dot32(const int U, __m256i c, __m256i ca, __m256i q, __m256i ones) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(U ? c : ca, U ? q : _mm256_sign_epi8(q, c)), ones);
}

/// R (1-4) x rows from r against the unpacked row: per run of 32, the integer dot times the
/// precomputed d_s dx_s (one broadcast from memory), two accumulators per row.
TGT2 INLINE void qdot_avx2(const int R, const int U, const wrow *u, const qx *X, long r, long ns, float *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *q[4];
    float *ds[4];
    __m256 a0[4], a1[4];
    UNROLL for (int i = 0; i < R; i++) {
        q[i] = X->q + (r + i) * X->k;
        ds[i] = u->ds + i * ns;
        const float *dx = X->dx + (r + i) * ns;
        long b = 0;
        for (; b + 8 <= ns; b += 8) _mm256_storeu_ps(ds[i] + b, _mm256_mul_ps(_mm256_loadu_ps(u->d + b), _mm256_loadu_ps(dx + b)));
        for (; b < ns; b++) ds[i][b] = u->d[b] * dx[b];
        a0[i] = _mm256_setzero_ps();
        a1[i] = _mm256_setzero_ps();
    }
    long b = 0;
    for (; b + 2 <= ns; b += 2) {
        const __m256i c0 = _mm256_loadu_si256((const __m256i *)(u->c + 32 * b));
        const __m256i c1 = _mm256_loadu_si256((const __m256i *)(u->c + 32 * b + 32));
        const __m256i ca0 = U ? c0 : _mm256_sign_epi8(c0, c0), ca1 = U ? c1 : _mm256_sign_epi8(c1, c1);
        UNROLL for (int i = 0; i < R; i++) {
            const __m256i p0 = dot32(U, c0, ca0, _mm256_loadu_si256((const __m256i *)(q[i] + 32 * b)), ones);
            const __m256i p1 = dot32(U, c1, ca1, _mm256_loadu_si256((const __m256i *)(q[i] + 32 * b + 32)), ones);
            a0[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_broadcast_ss(ds[i] + b), a0[i]);
            a1[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_broadcast_ss(ds[i] + b + 1), a1[i]);
        }
    }
    if (b < ns) {
        const __m256i c0 = _mm256_loadu_si256((const __m256i *)(u->c + 32 * b));
        const __m256i ca0 = U ? c0 : _mm256_sign_epi8(c0, c0);
        UNROLL for (int i = 0; i < R; i++) {
            const __m256i p0 = dot32(U, c0, ca0, _mm256_loadu_si256((const __m256i *)(q[i] + 32 * b)), ones);
            a0[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_broadcast_ss(ds[i] + b), a0[i]);
        }
    }
    UNROLL for (int i = 0; i < R; i++) out[i] = hsum8(_mm256_add_ps(a0[i], a1[i]));
}

/// A codebook type's rows (`lut`): each block's 32 codes by a table shuffle of its 16 nibble bytes,
/// in registers; per block and x row the integer dot times d dx, blocks alternating between two
/// accumulators: qdot_avx2's integers and float operations in its order (the outputs equal the
/// unpacked path's), without writing and re-reading the unpacked row.
TGT2 INLINE float lut_scale(const int kind, const uint8_t *b) { return kind == STRATA_LUT_E8M0 ? strata_e8m0_half(b[0]) : f16c_at(b); }

/// The last block of a row with an odd number of them (into a0), then each x row's output: the
/// sum of both accumulators (the AVX2 and VNNI walks end alike).
TGT2 INLINE void lut_end_avx2(const int S, const int R, const strata_linear_args *a, const qx *X, long j, long r, long b,
                              __m256 *a0, const __m256 *a1) {
    const strata_qtype *t = &strata_qtypes[a->wtype];
    const long ns = a->k / 32, bb = t->bytes;
    if (b < ns) {
        const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t->lut));
        const __m256i lo4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
        const uint8_t *w0 = (const uint8_t *)a->w + (size_t)j * (size_t)ns * (size_t)bb + b * bb;
        const __m128i n0 = _mm_loadu_si128((const __m128i *)(w0 + t->lut_skip));
        const __m256i c0 = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(n0, 4), n0), lo4));
        const __m256i ca0 = _mm256_sign_epi8(c0, c0);
        const float d0 = lut_scale(S, w0);
        UNROLL for (int i = 0; i < R; i++) {
            const __m256i p0 = dot32(0, c0, ca0, _mm256_loadu_si256((const __m256i *)(X->q + (r + i) * X->k + 32 * b)), ones);
            a0[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * X->dx[(r + i) * ns + b]), a0[i]);
        }
    }
    UNROLL for (int i = 0; i < R; i++) store(a, r + i, j, hsum8(_mm256_add_ps(a0[i], a1[i])));
}

TGT2 INLINE void lutrows_avx2_t(const int S, const int R, const strata_linear_args *a, const qx *X, long j, long r) {
    const strata_qtype *t = &strata_qtypes[a->wtype];
    const long ns = a->k / 32, bb = t->bytes;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)ns * (size_t)bb;
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t->lut));
    const __m256i lo4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256 a0[4], a1[4];
    UNROLL for (int i = 0; i < R; i++) { a0[i] = _mm256_setzero_ps(); a1[i] = _mm256_setzero_ps(); }
    long b = 0;
    for (; b + 2 <= ns; b += 2) {
        const uint8_t *w0 = w + b * bb, *w1 = w0 + bb;
        const __m128i n0 = _mm_loadu_si128((const __m128i *)(w0 + t->lut_skip)), n1 = _mm_loadu_si128((const __m128i *)(w1 + t->lut_skip));
        const __m256i c0 = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(n0, 4), n0), lo4));
        const __m256i c1 = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(n1, 4), n1), lo4));
        const __m256i ca0 = _mm256_sign_epi8(c0, c0), ca1 = _mm256_sign_epi8(c1, c1);
        const float d0 = lut_scale(S, w0), d1 = lut_scale(S, w1);
        UNROLL for (int i = 0; i < R; i++) {
            const int8_t *q = X->q + (r + i) * X->k + 32 * b;
            const float *dx = X->dx + (r + i) * ns + b;
            const __m256i p0 = dot32(0, c0, ca0, _mm256_loadu_si256((const __m256i *)q), ones);
            const __m256i p1 = dot32(0, c1, ca1, _mm256_loadu_si256((const __m256i *)(q + 32)), ones);
            a0[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * dx[0]), a0[i]);
            a1[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d1 * dx[1]), a1[i]);
        }
    }
    lut_end_avx2(S, R, a, X, j, r, b, a0, a1);
}

TGT2 INLINE void lutrows_avx2_s(const int S, const strata_linear_args *a, const qx *X, long j0, long j1) {
    for (long j = j0; j < j1; j++) {
        long r = 0;
        for (; r + 4 <= a->m; r += 4) lutrows_avx2_t(S, 4, a, X, j, r);
        switch (a->m - r) {
        case 3: lutrows_avx2_t(S, 3, a, X, j, r); break;
        case 2: lutrows_avx2_t(S, 2, a, X, j, r); break;
        case 1: lutrows_avx2_t(S, 1, a, X, j, r); break;
        default: break;
        }
    }
}

TGT2 static void lutrows_avx2(const strata_linear_args *a, const qx *X, long j0, long j1) {
    if (strata_qtypes[a->wtype].lut_scale == STRATA_LUT_E8M0) lutrows_avx2_s(STRATA_LUT_E8M0, a, X, j0, j1);
    else lutrows_avx2_s(STRATA_LUT_F16, a, X, j0, j1);
}

#define TGTV __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/// The codebook rows on AVX-512 VNNI: two blocks per step in one 512-bit register (the codes of
/// block b in lanes 0-7 of the products, of b + 1 in lanes 8-15), |codes| against x with the
/// codes' signs (vpdpbusd), scaled and summed per lane. Each lane does what lutrows_avx2_t's two
/// accumulators do (a0 the even blocks, a1 the odd), and the end adds the halves and sums them as
/// it does: the outputs equal the AVX2 path's, bit for bit.
TGTV INLINE void lutrows_vnni_t(const int S, const int R, const strata_linear_args *a, const qx *X, long j, long r) {
    const strata_qtype *t = &strata_qtypes[a->wtype];
    const long ns = a->k / 32, bb = t->bytes;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)ns * (size_t)bb;
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t->lut));
    const __m512i lo4 = _mm512_set1_epi8(15), zero = _mm512_setzero_si512();
    __m512 acc[4];
    UNROLL for (int i = 0; i < R; i++) acc[i] = _mm512_setzero_ps();
    long b = 0;
    for (; b + 2 <= ns; b += 2) {
        const uint8_t *w0 = w + b * bb, *w1 = w0 + bb;
        const __m128i n0 = _mm_loadu_si128((const __m128i *)(w0 + t->lut_skip)), n1 = _mm_loadu_si128((const __m128i *)(w1 + t->lut_skip));
        const __m512i nib = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(_mm_srli_epi16(n0, 4), n0)),
                                               _mm256_set_m128i(_mm_srli_epi16(n1, 4), n1), 1);
        const __m512i c = _mm512_shuffle_epi8(lut, _mm512_and_si512(nib, lo4));
        const __m512i ca = _mm512_abs_epi8(c);
        const __mmask64 neg = _mm512_movepi8_mask(c);
        const float d0 = lut_scale(S, w0), d1 = lut_scale(S, w1);
        UNROLL for (int i = 0; i < R; i++) {
            const int8_t *q = X->q + (r + i) * X->k + 32 * b;
            const float *dx = X->dx + (r + i) * ns + b;
            const __m512i xq = _mm512_loadu_si512((const void *)q);
            const __m512i p = _mm512_dpbusd_epi32(zero, ca, _mm512_mask_sub_epi8(xq, neg, zero, xq));
            const __m512 sc = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0 * dx[0]), _mm512_set1_ps(d1 * dx[1]));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc[i]);
        }
    }
    __m256 a0[4], a1[4];
    UNROLL for (int i = 0; i < R; i++) {
        a0[i] = _mm512_castps512_ps256(acc[i]);
        a1[i] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i]), 1));
    }
    lut_end_avx2(S, R, a, X, j, r, b, a0, a1);
}

TGTV INLINE void lutrows_vnni_s(const int S, const strata_linear_args *a, const qx *X, long j0, long j1) {
    for (long j = j0; j < j1; j++) {
        long r = 0;
        for (; r + 4 <= a->m; r += 4) lutrows_vnni_t(S, 4, a, X, j, r);
        switch (a->m - r) {
        case 3: lutrows_vnni_t(S, 3, a, X, j, r); break;
        case 2: lutrows_vnni_t(S, 2, a, X, j, r); break;
        case 1: lutrows_vnni_t(S, 1, a, X, j, r); break;
        default: break;
        }
    }
}

TGTV static void lutrows_vnni(const strata_linear_args *a, const qx *X, long j0, long j1) {
    if (strata_qtypes[a->wtype].lut_scale == STRATA_LUT_E8M0) lutrows_vnni_s(STRATA_LUT_E8M0, a, X, j0, j1);
    else lutrows_vnni_s(STRATA_LUT_F16, a, X, j0, j1);
}

TGT2 INLINE void qrows_avx2_t(const int U, const strata_linear_args *a, const qx *X, long j0, long j1, const wrow *u) {
    const long ns = a->k / 32;
    const int off = strata_qtypes[a->wtype].has_offset;
    float v[4];
    for (long j = j0; j < j1; j++) {
        unpack_row(STRATA_ISA_AVX2, a, j, u);
        long r = 0;
        for (; r + 4 <= a->m; r += 4) {
            qdot_avx2(4, U, u, X, r, ns, v);
            for (int i = 0; i < 4; i++) store(a, r + i, j, off ? v[i] + dot_f32(u->m, X->xs + (r + i) * ns, ns) : v[i]);
        }
        for (; r < a->m; r++) {
            qdot_avx2(1, U, u, X, r, ns, v);
            store(a, r, j, off ? v[0] + dot_f32(u->m, X->xs + r * ns, ns) : v[0]);
        }
    }
}

TGT2 static void qrows_avx2(const strata_linear_args *a, const qx *X, long j0, long j1, const wrow *u) {
    if (strata_qtypes[a->wtype].lut) lutrows_avx2(a, X, j0, j1);
    else if (strata_qtypes[a->wtype].unsigned_codes) qrows_avx2_t(1, a, X, j0, j1, u);
    else qrows_avx2_t(0, a, X, j0, j1, u);
}
#endif

static void q8_rows(int isa, const strata_linear_args *a, const qx *X, long j0, long j1) {
    wrow u;
    if (wrow_buffer(a->k, 0, &u) != 0) { strata_qrows_portable(a, j0, j1); return; }
#if STRATA_X86
    if (isa == STRATA_ISA_AVX512 && strata_qtypes[a->wtype].lut && strata_q8_vnni_supported()) { lutrows_vnni(a, X, j0, j1); return; }
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
