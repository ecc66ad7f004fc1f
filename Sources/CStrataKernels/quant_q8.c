// The quantized linear with 8-bit activations (STRATA_ACT_Q8): each x row is quantized per weight
// block (32 weights for Q8_0 / Q4_0, 256 for Q4_K / Q6_K) to int8 with one f32 scale,
// dx = max|x| / 127, q = round(x / dx), and each block's dot product is formed in integers
// (AVX-512 VNNI vpdpbusd: 64 u8 x s8 products per instruction), then scaled in f32:
//
//   Q8_0:  dw * dx * sum(qw * qx)
//   Q4_0:  dw * dx * sum((qw - 8) * qx)
//   Q4_K:  per sub-block s of 32: d sc_s dx sum(q * qx) - dmin m_s dx sum(qx)
//   Q6_K:  per sub-block s of 16: d sc_s dx sum((q - 32) * qx)
//
// This is llama.cpp's arithmetic (its vec_dot kernels quantize activations to Q8_0 / Q8_K the
// same way); it trades the exactness of f32 activations (STRATA_ACT_F32, quant.c) for about 3x
// fewer instructions per weight. The portable code below is the definition; the VNNI kernel
// gives the same integers and differs only in the order of the f32 additions.
#define _GNU_SOURCE
#include "strata_kernels.h"
#include "common.h"

#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>


/// The definition: weight row j against x row r, block by block, in integers.
static float dot_q8_portable(int t, const uint8_t *w, const float *x, long k) {
    const long be = qblock_elements(t), bb = qblock_bytes(t);
    int8_t q[256];
    float sum = 0;
    for (long b = 0; b < k / be; b++, w += bb) {
        const float dx = quantize_block(x + b * be, (int)be, q);
        if (t == STRATA_W_Q8_0) {
            int s = 0;
            for (int i = 0; i < 32; i++) s += (int)(int8_t)w[2 + i] * q[i];
            sum += f16_at(w) * dx * (float)s;
        } else if (t == STRATA_W_Q4_0) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += ((w[2 + i] & 15) - 8) * q[i] + ((w[2 + i] >> 4) - 8) * q[i + 16];
            sum += f16_at(w) * dx * (float)s;
        } else if (t == STRATA_W_Q4_K) {
            const float d = f16_at(w), dmin = f16_at(w + 2);
            for (int sb = 0; sb < 8; sb++) {
                int sc, m, s = 0, sx = 0;
                k4_scale_min(sb, w + 4, &sc, &m);
                const uint8_t *qs = w + 16 + 32 * (sb / 2);
                for (int l = 0; l < 32; l++) {
                    const int code = sb % 2 == 0 ? (qs[l] & 15) : (qs[l] >> 4);
                    s += code * q[32 * sb + l];
                    sx += q[32 * sb + l];
                }
                sum += d * (float)sc * dx * (float)s - dmin * (float)m * dx * (float)sx;
            }
        } else {  // Q6_K
            const float d = f16_at(w + 208);
            for (int sb = 0; sb < 16; sb++) {
                int s = 0;
                for (int e = 16 * sb; e < 16 * sb + 16; e++) {
                    const int half = e / 128, jj = e % 128, quarter = jj / 32, l = jj % 32;
                    const uint8_t ql = w[64 * half + l + (quarter % 2 == 1 ? 32 : 0)];
                    const int low = quarter < 2 ? (ql & 15) : (ql >> 4);
                    const int high = (w[128 + 32 * half + l] >> (2 * quarter)) & 3;
                    s += ((low | (high << 4)) - 32) * q[e];
                }
                sum += d * (float)(int8_t)w[192 + sb] * dx * (float)s;
            }
        }
    }
    return sum;
}

static void q8rows_portable(const strata_linear_args *a, long j0, long j1) {
    const int t = a->wtype;
    const size_t rb = (size_t)(a->k / qblock_elements(t)) * (size_t)qblock_bytes(t);
    for (long j = j0; j < j1; j++)
        for (long r = 0; r < a->m; r++) {
            const float v = dot_q8_portable(t, (const uint8_t *)a->w + (size_t)j * rb, a->x + r * a->ldx, a->k);
            float *y = a->y + r * a->ldy + j;
            *y = a->accumulate ? *y + v : v;
        }
}

// ---- the quantized activations of one call -----------------------------------------------------
//
// Per x row, in the order the VNNI kernel reads them:
//   q     int8[k]      codes; Q4_0 per 64 for VNNI: [b 0-15, b+1 0-15, b 16-31, b+1 16-31];
//                      Q4_K per 128: [0-31, 64-95, 32-63, 96-127]; Q8_0, Q6_K natural order
//   bias  int32[k/4]   -offset * (sum of the 4 codes of the lane): offset 128 (Q8_0, whose
//                      weights are read as unsigned w + 128), 8 (Q4_0), 32 (Q6_K), 0 (Q4_K);
//                      the AVX2 kernel, Q4_0: [k/32] 8 * the sum of each block's codes
//   dl    float[k/4]   Q8_0 / Q4_0: the scale of the lane's block; K types: [k/256] per block
//   xs    float[k/32]  Q4_K: dx * sum of the codes of each sub-block of 32 (natural order)
//   s16   int16[k/16]  Q6_K: the sum of the codes of each sub-block of 16 (the AVX2 kernel scales
//                      it by the sub-block's scale in integers, one vpmaddwd per block and row)

typedef struct {
    int8_t *q;
    int32_t *bias;
    float *dl;
    float *xs;
    int16_t *s16;
    long k;
} qx_row;

static _Thread_local strata_tls_buf t_qx;

#if STRATA_X86
static float quantize_block_v(const float *x, int n, int8_t *q);
static void lane_bias_v(const int8_t *q, long k, int off, int32_t *bias);
static float quantize_block_v2(const float *x, int n, int8_t *q);
#endif

/// Which kernel runs the 8-bit product: the definition, AVX2 (maddubs), or AVX-512 VNNI.
enum { Q8_PORTABLE = 0, Q8_AVX2 = 1, Q8_VNNI = 2 };
/// Bytes ahead of the weight stream to prefetch, every cache line: 4 KiB since each thread walks
/// its own contiguous range of the pool (docs/benchmarks.md, "Measurements behind the kernels'
/// constants": QPF).
#define QPF 4096

/// Quantizes the m rows of x for weights of type t into the calling thread's buffer (grown, never
/// shrunk: no allocation once it has held the largest call). Returns 0, or -1 if out of memory.
static int quantize_rows(const strata_linear_args *a, qx_row *rows, int kernel) {
    const int t = a->wtype;
    const long k = a->k, be = qblock_elements(t);
    const size_t per = (size_t)k + 4 * (size_t)(k / 4) + 4 * (size_t)(k / 4) + 4 * (size_t)(k / 32) + 2 * (size_t)(k / 16) + 256;
    const size_t need = per * (size_t)a->m;
    char *p = (char *)strata_tls_grow(&t_qx, STRATA_TLS_QX, need);
    if (!p) return -1;
    const int off = t == STRATA_W_Q8_0 ? 128 : t == STRATA_W_Q4_0 ? 8 : t == STRATA_W_Q6_K ? 32 : 0;
    for (long r = 0; r < a->m; r++) {
        qx_row *R = &rows[r];
        R->k = k;
        R->q = (int8_t *)p;
        R->bias = (int32_t *)(p + ((k + 63) & ~63L));
        R->dl = (float *)((char *)R->bias + 4 * (k / 4));
        R->xs = R->dl + k / 4;
        R->s16 = (int16_t *)(R->xs + k / 32);
        p = (char *)(R->s16 + k / 16);
        p = (char *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
        const float *x = a->x + r * a->ldx;
        int8_t nat[256];
        for (long b = 0; b < k / be; b++) {
#if STRATA_X86
            const float d = kernel == Q8_VNNI ? quantize_block_v(x + b * be, (int)be, nat) : quantize_block_v2(x + b * be, (int)be, nat);
#else
            (void)kernel;
            const float d = quantize_block(x + b * be, (int)be, nat);
#endif
            int8_t *dst = R->q + b * be;
            if (t == STRATA_W_Q4_K) {
                for (int h = 0; h < 2; h++) {
                    memcpy(dst + 128 * h, nat + 128 * h, 32);
                    memcpy(dst + 128 * h + 32, nat + 128 * h + 64, 32);
                    memcpy(dst + 128 * h + 64, nat + 128 * h + 32, 32);
                    memcpy(dst + 128 * h + 96, nat + 128 * h + 96, 32);
                }
                for (int s = 0; s < 8; s++) {
                    int sx = 0;
                    for (int l = 0; l < 32; l++) sx += nat[32 * s + l];
                    R->xs[b * 8 + s] = d * (float)sx;
                }
                R->dl[b] = d;
            } else if (t == STRATA_W_Q4_0 && kernel == Q8_VNNI) {
                // pairs of blocks interleave by halves; k is a multiple of 64 on this path
                const long pair = b / 2, side = b % 2;
                int8_t *pd = R->q + pair * 64;
                memcpy(pd + 16 * side, nat, 16);
                memcpy(pd + 32 + 16 * side, nat + 16, 16);
                for (int l = 0; l < 4; l++) { R->dl[pair * 16 + 4 * side + l] = d; R->dl[pair * 16 + 8 + 4 * side + l] = d; }
            } else if (kernel == Q8_AVX2 && (t == STRATA_W_Q8_0 || t == STRATA_W_Q4_0)) {
                // natural order; per pair of blocks A, B the scales as the AVX2 kernel's folded
                // sums lie: [A A B B A A B B]
                memcpy(dst, nat, 32);
                float *pd = R->dl + (b / 2) * 8 + 2 * (b % 2);
                pd[0] = pd[1] = pd[4] = pd[5] = d;
                if (t == STRATA_W_Q4_0) {
                    // eight rows at a time (q4_0x8_avx2) take the codes unsigned: 8 x the block's sum
                    int sx = 0;
                    for (int l = 0; l < 32; l++) sx += nat[l];
                    R->bias[b] = 8 * sx;
                }
            } else if (t == STRATA_W_Q8_0) {
                memcpy(dst, nat, 32);
                for (int l = 0; l < 8; l++) R->dl[b * 8 + l] = d;
            } else {
                memcpy(dst, nat, 256);
                for (int s = 0; s < 16; s++) {
                    int sx = 0;
                    for (int l = 0; l < 16; l++) sx += nat[16 * s + l];
                    R->s16[b * 16 + s] = (int16_t)sx;
                }
                R->dl[b] = d;
            }
        }
#if STRATA_X86
        // the AVX2 kernel needs no lane bias (Q8_0 and Q4_0 by the sign trick, Q6_K through s16)
        if (kernel == Q8_VNNI) lane_bias_v(R->q, k, off, R->bias);
#else
        for (long l = 0; l < k / 4; l++)
            R->bias[l] = -off * (R->q[4 * l] + R->q[4 * l + 1] + R->q[4 * l + 2] + R->q[4 * l + 3]);
#endif
    }
    return 0;
}

#if STRATA_X86
#define TGTV __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/// The f16s at p and q as lanes 0 and 1 (the empty asm as in common.h's f16c_at).
TGTV INLINE __m128 h2f_pair(const uint8_t *p, const uint8_t *q) {
    uint16_t a, b;
    memcpy(&a, p, 2);
    memcpy(&b, q, 2);
    __m128i v = _mm_cvtsi32_si128((int)a | ((int)b << 16));
    __asm__("" : "+x"(v));
    return _mm_cvtph_ps(v);
}

/// quantize_block with 16 lanes (n a multiple of 16): the same codes (vcvtps2dq rounds half to
/// even, as lrintf does), without a libm call per element (8 us per 2048-wide row before).
TGTV static float quantize_block_v(const float *x, int n, int8_t *q) {
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    const float amax = _mm512_reduce_max_ps(m);
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    for (int i = 0; i < n; i += 16)
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vid))));
    return d;
}

/// bias[l] = -off * (sum of codes 4l ... 4l + 3), 64 codes at a time (k a multiple of 64 here).
TGTV static void lane_bias_v(const int8_t *q, long k, int off, int32_t *bias) {
    const __m512i ones = _mm512_set1_epi8(1), m = _mm512_set1_epi32(-off);
    for (long i = 0; i < k; i += 64) {
        const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(q + i));
        _mm512_storeu_si512(bias + i / 4, _mm512_mullo_epi32(s, m));
    }
}

/// Weight row j against RB quantized x rows (RB <= 4).
TGTV INLINE void q8row_vnni(const int t, const int RB, const strata_linear_args *a, const qx_row *X, long j, long r) {
    const long k = a->k, be = qblock_elements(t), bb = qblock_bytes(t), nb = k / be;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)nb * (size_t)bb;
    __m512 acc[4];
    __m256 accm[4];
    // the rows' arrays in locals: read through X, clang reloaded every pointer every block
    const int8_t *xq[4];
    const int32_t *xb[4];
    const float *xd[4], *xm[4];
    for (int rr = 0; rr < RB; rr++) {
        acc[rr] = _mm512_setzero_ps(); accm[rr] = _mm256_setzero_ps();
        xq[rr] = X[r + rr].q; xb[rr] = X[r + rr].bias; xd[rr] = X[r + rr].dl; xm[rr] = X[r + rr].xs;
    }
    const __m512i m4 = _mm512_set1_epi8(15);
    if (t == STRATA_W_Q8_0 || t == STRATA_W_Q4_0) {
        for (long b = 0; b < nb; b += 2, w += 2 * bb) {
            _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
            _mm_prefetch((const char *)w + QPF + 64, _MM_HINT_T0);
            __m512i W;
            __m512 dw;
            const __m512 d01 = _mm512_castps128_ps512(h2f_pair(w, w + bb));
            if (t == STRATA_W_Q8_0) {
                const __m256i lo = _mm256_loadu_si256((const __m256i *)(w + 2)), hi = _mm256_loadu_si256((const __m256i *)(w + bb + 2));
                W = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), _mm512_set1_epi8((char)0x80));
                dw = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), d01);
            } else {
                const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w + 2))),
                                                          _mm_loadu_si128((const __m128i *)(w + bb + 2)), 1);
                const __m512i vv = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
                W = _mm512_and_si512(vv, m4);
                dw = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0), d01);
            }
            for (int rr = 0; rr < RB; rr++) {
                const __m512i dot = _mm512_dpbusd_epi32(_mm512_loadu_si512(xb[rr] + b * 8), W, _mm512_loadu_si512(xq[rr] + b * 32));
                acc[rr] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), dw), _mm512_loadu_ps(xd[rr] + b * 8), acc[rr]);
            }
        }
    } else if (t == STRATA_W_Q4_K) {
        // 16-bit lane indices: scale 0 in the low half, scale 2 in the high half (S0); +1, +4, +5
        const __m512i p0 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        const __m512i one16 = _mm512_set1_epi16(1), four16 = _mm512_set1_epi16(4), five16 = _mm512_set1_epi16(5);
        for (long b = 0; b < nb; b++, w += bb) {
            _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
            _mm_prefetch((const char *)w + QPF + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)w + QPF + 128, _MM_HINT_T0);
            uint32_t u[4];
            k4_unpack_scales(w + 4, u);
            // the eight 6-bit scales as 16-bit lanes, one vector per 64 weights: [sub-block a x 16,
            // sub-block b x 16], the halves of that vector's codes
            const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)u)));
            const __m512i S0 = _mm512_permutexvar_epi16(p0, sc16), S1 = _mm512_permutexvar_epi16(_mm512_add_epi16(p0, one16), sc16);
            const __m512i S2 = _mm512_permutexvar_epi16(_mm512_add_epi16(p0, four16), sc16), S3 = _mm512_permutexvar_epi16(_mm512_add_epi16(p0, five16), sc16);
            const __m256 mn8 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(u + 2)))), _mm256_set1_ps(f16c_at(w + 2)));
            const float d = f16c_at(w);
            const __m512i Q0 = _mm512_loadu_si512(w + 16), Q1 = _mm512_loadu_si512(w + 80);
            const __m512i l0 = _mm512_and_si512(Q0, m4), h0 = _mm512_and_si512(_mm512_srli_epi16(Q0, 4), m4);
            const __m512i l1 = _mm512_and_si512(Q1, m4), h1 = _mm512_and_si512(_mm512_srli_epi16(Q1, 4), m4);
            for (int rr = 0; rr < RB; rr++) {
                // codes x codes in pairs (vpmaddubsw: at most 2 * 15 * 127, no saturation), times
                // the sub-block's scale in pairs (vpdpwssd), summed in integers over the block
                const int8_t *q = xq[rr] + b * 256;
                __m512i s = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_maddubs_epi16(l0, _mm512_loadu_si512(q)), S0);
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(h0, _mm512_loadu_si512(q + 64)), S1);
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(l1, _mm512_loadu_si512(q + 128)), S2);
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(h1, _mm512_loadu_si512(q + 192)), S3);
                acc[rr] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(d * xd[rr][b]), acc[rr]);
                accm[rr] = _mm256_fmadd_ps(mn8, _mm256_loadu_ps(xm[rr] + b * 8), accm[rr]);
            }
        }
    } else {  // Q6_K
        const __m512i lane4 = _mm512_srli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2);
        const __m512i three = _mm512_set1_epi8(3);
        for (long b = 0; b < nb; b++, w += bb) {
            for (int o = 0; o < 256; o += 64) _mm_prefetch((const char *)w + QPF + o, _MM_HINT_T0);
            const __m512 sc = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w + 192)))),
                                            _mm512_set1_ps(f16c_at(w + 208)));
            __m512i Qv[4];
            for (int n = 0; n < 2; n++) {
                const __m512i L = _mm512_loadu_si512(w + 64 * n);
                const __m256i H = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * n));
                const __m512i hlo = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(H), _mm256_srli_epi16(H, 2), 1), three);
                const __m512i hhi = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(H, 4)), _mm256_srli_epi16(H, 6), 1), three);
                Qv[2 * n] = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_slli_epi16(hlo, 4));
                Qv[2 * n + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4), _mm512_slli_epi16(hhi, 4));
            }
            __m512 S[4];
            for (int v = 0; v < 4; v++) S[v] = _mm512_permutexvar_ps(_mm512_add_epi32(lane4, _mm512_set1_epi32(4 * v)), sc);
            for (int rr = 0; rr < RB; rr++) {
                const int8_t *q = xq[rr] + b * 256;
                const int32_t *bias = xb[rr] + b * 64;
                __m512 tsum = _mm512_setzero_ps();
                for (int v = 0; v < 4; v++) {
                    const __m512i dot = _mm512_dpbusd_epi32(_mm512_loadu_si512(bias + 16 * v), Qv[v], _mm512_loadu_si512(q + 64 * v));
                    tsum = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), S[v], tsum);
                }
                acc[rr] = _mm512_fmadd_ps(tsum, _mm512_set1_ps(xd[rr][b]), acc[rr]);
            }
        }
    }
    for (int rr = 0; rr < RB; rr++) {
        float v = _mm512_reduce_add_ps(acc[rr]);
        if (t == STRATA_W_Q4_K) {
            const __m128 s = _mm_add_ps(_mm256_castps256_ps128(accm[rr]), _mm256_extractf128_ps(accm[rr], 1));
            const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
            v -= _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
        }
        float *y = a->y + (r + rr) * a->ldy + j;
        *y = a->accumulate ? *y + v : v;
    }
}

TGTV INLINE void q8rows_vnni_t(const int t, const strata_linear_args *a, const qx_row *X, long j0, long j1) {
    if (a->m > 4) {
        // groups of 4 x rows over bands of 64 weight rows: a group's quantized x (1-3 bytes per
        // weight and row) stays in L1 over the band, and the band (<= 64 rows, in L2) is read
        // from memory once, by the first group. Weight row by weight row against every group,
        // all of x came from L2 for each weight row: bench-linear, 16 rows, ms per TinyLlama
        // layer 11.3-11.6 -> 6.3-7.9 (Q8_0), 7.7 -> 3.6-4.0 (Q6_K), 3.3-3.6 -> 3.0 (Q4_K)
        for (long jb = j0; jb < j1; jb += 64) {
            const long je = jb + 64 < j1 ? jb + 64 : j1;
            long r = 0;
            for (; r + 4 <= a->m; r += 4) for (long j = jb; j < je; j++) q8row_vnni(t, 4, a, X, j, r);
            switch (a->m - r) {
            case 3: for (long j = jb; j < je; j++) q8row_vnni(t, 3, a, X, j, r); break;
            case 2: for (long j = jb; j < je; j++) q8row_vnni(t, 2, a, X, j, r); break;
            case 1: for (long j = jb; j < je; j++) q8row_vnni(t, 1, a, X, j, r); break;
            default: break;
            }
        }
        return;
    }
    for (long j = j0; j < j1; j++) {
        long r = 0;
        for (; r + 4 <= a->m; r += 4) q8row_vnni(t, 4, a, X, j, r);
        switch (a->m - r) {
        case 3: q8row_vnni(t, 3, a, X, j, r); break;
        case 2: q8row_vnni(t, 2, a, X, j, r); break;
        case 1: q8row_vnni(t, 1, a, X, j, r); break;
        default: break;
        }
    }
}

TGTV static void q8rows_vnni(const strata_linear_args *a, const qx_row *X, long j0, long j1) {
    switch (a->wtype) {
    case STRATA_W_Q8_0: q8rows_vnni_t(STRATA_W_Q8_0, a, X, j0, j1); break;
    case STRATA_W_Q4_0: q8rows_vnni_t(STRATA_W_Q4_0, a, X, j0, j1); break;
    case STRATA_W_Q4_K: q8rows_vnni_t(STRATA_W_Q4_K, a, X, j0, j1); break;
    case STRATA_W_Q6_K: q8rows_vnni_t(STRATA_W_Q6_K, a, X, j0, j1); break;
    default: break;
    }
}
#endif


#if STRATA_X86
// ---- AVX2 (no VNNI): the same integers with vpmaddubsw + vpmaddwd --------------------------------
//
// llama.cpp's way on AVX2: u8 x s8 products in pairs to int16 (vpmaddubsw), pairs of those to
// int32 (vpmaddwd by ones, or by the sub-block's scale). The codes of Q4_0, Q4_K and Q6_K are
// unsigned (at most 63), so no pair saturates (2 x 63 x 127); Q8_0's signed weights go in as
// |w| against x with w's sign (2 x 128 x 127), the bias lanes unused. Same x layout as the VNNI
// kernel (quantize_rows), 8 int32 lanes per 32 codes.
#define TGT2 __attribute__((target("avx2,fma,f16c")))

TGT2 static float quantize_block_v2(const float *x, int n, int8_t *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    for (int i = 0; i < n; i += 32) {
        // 32 floats -> 32 int8 (round half to even, as lrintf); |x * id| <= 127, no saturation
        const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vid));
        const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vid));
        const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vid));
        const __m256i e = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vid));
        const __m256i ab = _mm256_packs_epi32(a, b), ce = _mm256_packs_epi32(c, e);
        __m256i v = _mm256_packs_epi16(ab, ce);
        // the packs interleave 128-bit lanes: put the 4-byte groups back in order
        v = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), v);
    }
    return d;
}

/// The f16s at p and q as lanes 0 and 1 (h2f_pair for the AVX2 kernel).
TGT2 INLINE __m128 h2f_pair2(const uint8_t *p, const uint8_t *q) {
    uint16_t a, b;
    memcpy(&a, p, 2);
    memcpy(&b, q, 2);
    __m128i v = _mm_cvtsi32_si128((int)a | ((int)b << 16));
    __asm__("" : "+x"(v));
    return _mm_cvtph_ps(v);
}


/// Weight row j against RB quantized x rows (RB <= 4).
TGT2 INLINE void q8row_avx2(const int t, const int RB, const strata_linear_args *a, const qx_row *X, long j, long r) {
    const long k = a->k, be = qblock_elements(t), bb = qblock_bytes(t), nb = k / be;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)nb * (size_t)bb;
    // one accumulator per x row (Q4_K's mins subtracted into it): with RB a constant and the
    // row loops unrolled the accumulators live in registers (an array indexed in a loop stayed
    // on the stack, and each block's store-load of it was 15% of the kernel's cycles)
    __m256 acc[4];
    const int8_t *xq[4];
    const float *xd[4], *xm[4];
    const int16_t *xs16[4];
    UNROLL for (int rr = 0; rr < RB; rr++) {
        acc[rr] = _mm256_setzero_ps();
        xq[rr] = X[r + rr].q; xd[rr] = X[r + rr].dl; xm[rr] = X[r + rr].xs; xs16[rr] = X[r + rr].s16;
    }
    const __m256i m4 = _mm256_set1_epi8(15), ones16 = _mm256_set1_epi16(1);
    if (t == STRATA_W_Q8_0) {
        // Blocks in pairs (k is a multiple of 64 on this path; Q4_0 has its own kernel,
        // q4_0x8_avx2). The sign trick (|w| times x with w's sign: vpmaddubsw takes unsigned x
        // signed), so no bias term; the two blocks' int32 sums folded into one vector by vphaddd
        // (lanes [A A B B A A B B]), converted and scaled once per pair
        const __m256i pick = _mm256_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1);
        for (long b = 0; b < nb; b += 2, w += 2 * bb) {
            _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
            _mm_prefetch((const char *)w + QPF + 64, _MM_HINT_T0);
            const __m256i W0 = _mm256_loadu_si256((const __m256i *)(w + 2)), W1 = _mm256_loadu_si256((const __m256i *)(w + bb + 2));
            const __m256i a0 = _mm256_sign_epi8(W0, W0), a1 = _mm256_sign_epi8(W1, W1);
            const __m256 dw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(h2f_pair2(w, w + bb)), pick);
            UNROLL for (int rr = 0; rr < RB; rr++) {
                const int8_t *q = xq[rr] + b * 32;
                const __m256i d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(a0, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q), W0)), ones16);
                const __m256i d1 = _mm256_madd_epi16(_mm256_maddubs_epi16(a1, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(q + 32)), W1)), ones16);
                const __m256 sum = _mm256_cvtepi32_ps(_mm256_hadd_epi32(d0, d1));
                acc[rr] = _mm256_fmadd_ps(_mm256_mul_ps(sum, dw), _mm256_loadu_ps(xd[rr] + b * 4), acc[rr]);
            }
        }
    } else if (t == STRATA_W_Q4_K) {
        // x per 128: sub-blocks [0, 2, 1, 3] (the VNNI layout); chunk c of the codes holds
        // sub-blocks 2c (low nibbles) and 2c + 1 (high)
        static const int xoff[8] = {0, 64, 32, 96, 128, 192, 160, 224};
        for (long b = 0; b < nb; b++, w += bb) {
            _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
            _mm_prefetch((const char *)w + QPF + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)w + QPF + 128, _MM_HINT_T0);
            uint32_t u[4];
            k4_unpack_scales(w + 4, u);
            const __m256 mn8 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(u + 2)))),
                                             _mm256_set1_ps(f16c_at(w + 2)));
            const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)u)));
            const float d = f16c_at(w);
            __m256i lo[4], hi[4], S[8];
            for (int c = 0; c < 4; c++) {
                const __m256i Q = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * c));
                lo[c] = _mm256_and_si256(Q, m4);
                hi[c] = _mm256_and_si256(_mm256_srli_epi16(Q, 4), m4);
            }
            for (int sb = 0; sb < 8; sb++)
                S[sb] = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(2 * sb | (2 * sb + 1) << 8)));
            UNROLL for (int rr = 0; rr < RB; rr++) {
                const int8_t *q = xq[rr] + b * 256;
                __m256i s = _mm256_setzero_si256();
                for (int c = 0; c < 4; c++) {
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(lo[c], _mm256_loadu_si256((const __m256i *)(q + xoff[2 * c]))), S[2 * c]));
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(hi[c], _mm256_loadu_si256((const __m256i *)(q + xoff[2 * c + 1]))), S[2 * c + 1]));
                }
                acc[rr] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * xd[rr][b]), acc[rr]);
                acc[rr] = _mm256_fnmadd_ps(mn8, _mm256_loadu_ps(xm[rr] + b * 8), acc[rr]);
            }
        }
    } else {  // Q6_K: x in natural order; the -32 of every code through the sums of 16 (s16)
        const __m256i three = _mm256_set1_epi8(3);
        for (long b = 0; b < nb; b++, w += bb) {
            for (int o = 0; o < 256; o += 64) _mm_prefetch((const char *)w + QPF + o, _MM_HINT_T0);
            const float d = f16c_at(w + 208);
            __m256i Qv[8], Sv[8];
            for (int half = 0; half < 2; half++) {
                const __m256i L0 = _mm256_loadu_si256((const __m256i *)(w + 64 * half));
                const __m256i L1 = _mm256_loadu_si256((const __m256i *)(w + 64 * half + 32));
                const __m256i H = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * half));
                Qv[4 * half + 0] = _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_slli_epi16(_mm256_and_si256(H, three), 4));
                Qv[4 * half + 1] = _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 2), three), 4));
                Qv[4 * half + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 4), three), 4));
                Qv[4 * half + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 6), three), 4));
            }
            // the 16 signed scales as 16-bit lanes; 32 codes span two sub-blocks of 16: the
            // vpmaddubsw pairs 0-7 take the first scale, 8-15 the second
            const __m128i sc8 = _mm_loadu_si128((const __m128i *)(w + 192));
            const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
            for (int v = 0; v < 8; v++) {
                const __m128i pick = _mm_setr_epi8((char)(2 * v), (char)(2 * v), (char)(2 * v), (char)(2 * v), (char)(2 * v), (char)(2 * v), (char)(2 * v), (char)(2 * v),
                                                   (char)(2 * v + 1), (char)(2 * v + 1), (char)(2 * v + 1), (char)(2 * v + 1), (char)(2 * v + 1), (char)(2 * v + 1), (char)(2 * v + 1), (char)(2 * v + 1));
                Sv[v] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
            }
            UNROLL for (int rr = 0; rr < RB; rr++) {
                const int8_t *q = xq[rr] + b * 256;
                // sum over sub-blocks of scale * (sum of code * x): 2 * 63 * 127 per pair, times
                // |scale| <= 128, 16 pairs per lane and block: far inside 32 bits
                __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(Qv[0], _mm256_loadu_si256((const __m256i *)q)), Sv[0]);
                for (int v = 1; v < 8; v++)
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(Qv[v], _mm256_loadu_si256((const __m256i *)(q + 32 * v))), Sv[v]));
                const __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(xs16[rr] + b * 16)), sc16);
                s = _mm256_sub_epi32(s, _mm256_slli_epi32(off, 5));
                acc[rr] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * xd[rr][b]), acc[rr]);
            }
        }
    }
    UNROLL for (int rr = 0; rr < RB; rr++) {
        const float v = hsum8(acc[rr]);
        float *y = a->y + (r + rr) * a->ldy + j;
        *y = a->accumulate ? *y + v : v;
    }
}

/// Q4_0, eight weight rows j..j+7 at once against RB x rows (RB <= 4), the outputs of the eight
/// rows in the eight lanes: no horizontal sums, and each block's nibbles unpacked once for eight
/// rows' worth of products. The eight rows' 16 code bytes are transposed by 4-byte groups, so
/// that lane r of chunk c holds row r's codes 4c..4c+3 (low nibbles) and 16+4c..16+4c+3 (high):
/// vpmaddubsw takes the codes unsigned (0-15) against x broadcast 4 bytes at a time, and the
/// offset of 8 comes off once per block (8 x the block's sum of x, from quantize_rows). The
/// eight rows' scales are one vcvtph2ps.
TGT2 INLINE void q4_0x8_avx2(const int RB, const strata_linear_args *a, const qx_row *X, long j, long r) {
    const long nb = a->k / 32;
    const size_t rb = (size_t)nb * 18;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)j * rb;
    __m256 acc[4];
    const int8_t *xq[4];
    const float *xd[4];
    const int32_t *xb[4];
    UNROLL for (int rr = 0; rr < RB; rr++) {
        acc[rr] = _mm256_setzero_ps();
        xq[rr] = X[r + rr].q; xd[rr] = X[r + rr].dl; xb[rr] = X[r + rr].bias;
    }
    const __m256i m4 = _mm256_set1_epi8(15), ones16 = _mm256_set1_epi16(1);
    // the next eight rows (one contiguous run of 8 x rb bytes) asked for while these compute,
    // 144 bytes of it per block: eight short interleaved streams each started cold (prefetching
    // ahead within each row ran 1 row at 1.44 ms per TinyLlama layer against 1.29 row by row)
    const char *next = (const char *)w + 8 * rb;
    for (long b = 0; b < nb; b++, w += 18) {
        _mm_prefetch(next + b * 144, _MM_HINT_T0);
        _mm_prefetch(next + b * 144 + 64, _MM_HINT_T0);
        _mm_prefetch(next + b * 144 + 128, _MM_HINT_T0);
        __m128i R[8];
        for (int rw = 0; rw < 8; rw++) R[rw] = _mm_loadu_si128((const __m128i *)(w + rw * rb + 2));
        const __m128i t0 = _mm_unpacklo_epi32(R[0], R[1]), t1 = _mm_unpackhi_epi32(R[0], R[1]);
        const __m128i t2 = _mm_unpacklo_epi32(R[2], R[3]), t3 = _mm_unpackhi_epi32(R[2], R[3]);
        const __m128i t4 = _mm_unpacklo_epi32(R[4], R[5]), t5 = _mm_unpackhi_epi32(R[4], R[5]);
        const __m128i t6 = _mm_unpacklo_epi32(R[6], R[7]), t7 = _mm_unpackhi_epi32(R[6], R[7]);
        __m256i lo[4], hi[4];
        const __m128i u[4] = {_mm_unpacklo_epi64(t0, t2), _mm_unpackhi_epi64(t0, t2), _mm_unpacklo_epi64(t1, t3), _mm_unpackhi_epi64(t1, t3)};
        const __m128i v[4] = {_mm_unpacklo_epi64(t4, t6), _mm_unpackhi_epi64(t4, t6), _mm_unpacklo_epi64(t5, t7), _mm_unpackhi_epi64(t5, t7)};
        for (int c = 0; c < 4; c++) {
            const __m256i C = _mm256_inserti128_si256(_mm256_castsi128_si256(u[c]), v[c], 1);
            lo[c] = _mm256_and_si256(C, m4);
            hi[c] = _mm256_and_si256(_mm256_srli_epi16(C, 4), m4);
        }
        // the scales gathered into one register (through memory, eight 2-byte stores and a
        // 16-byte load missed store forwarding on every block)
        uint16_t h[8];
        for (int rw = 0; rw < 8; rw++) memcpy(&h[rw], w + rw * rb, 2);
        const __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3],
                                                         (short)h[4], (short)h[5], (short)h[6], (short)h[7]));
        UNROLL for (int rr = 0; rr < RB; rr++) {
            const int8_t *q = xq[rr] + b * 32;
            int32_t x4[8];
            memcpy(x4, q, 32);
            // 8 vpmaddubsw of two products each (|2 x 15 x 127| < 2^15), summed in 16 bits: at most 30480
            __m256i s16 = _mm256_maddubs_epi16(lo[0], _mm256_set1_epi32(x4[0]));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[1], _mm256_set1_epi32(x4[1])));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[2], _mm256_set1_epi32(x4[2])));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[3], _mm256_set1_epi32(x4[3])));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[0], _mm256_set1_epi32(x4[4])));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[1], _mm256_set1_epi32(x4[5])));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[2], _mm256_set1_epi32(x4[6])));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[3], _mm256_set1_epi32(x4[7])));
            const __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(s16, ones16), _mm256_set1_epi32(xb[rr][b]));
            const float dx = xd[rr][(b / 2) * 8 + 2 * (b % 2)];
            acc[rr] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s32), dw), _mm256_set1_ps(dx), acc[rr]);
        }
    }
    UNROLL for (int rr = 0; rr < RB; rr++) {
        float *y = a->y + (r + rr) * a->ldy + j;
        _mm256_storeu_ps(y, a->accumulate ? _mm256_add_ps(_mm256_loadu_ps(y), acc[rr]) : acc[rr]);
    }
}

/// One Q4_0 weight row against every x row, with q4_0x8_avx2's arithmetic to the bit (the
/// block's integer sum is exact either way; then the same float operations in the same order), so
/// that which rows a chunk of the pool takes eight at a time does not change any output: results
/// do not depend on the thread count.
TGT2 static void q4_0row1_avx2(const strata_linear_args *a, const qx_row *X, long j) {
    const long nb = a->k / 32;
    const uint8_t *w0 = (const uint8_t *)a->w + (size_t)j * (size_t)nb * 18;
    const __m256i m4 = _mm256_set1_epi8(15), ones16 = _mm256_set1_epi16(1);
    for (long r = 0; r < a->m; r++) {
        const qx_row *R = &X[r];
        float acc = 0;
        const uint8_t *w = w0;
        for (long b = 0; b < nb; b++, w += 18) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(w + 2));
            const __m256i codes = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1), m4);
            const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, _mm256_loadu_si256((const __m256i *)(R->q + b * 32))), ones16);
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
            h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 1));
            const int sum = _mm_cvtsi128_si32(h) - R->bias[b];
            const float dx = R->dl[(b / 2) * 8 + 2 * (b % 2)];
            acc = fmaf((float)sum * f16c_at(w), dx, acc);
        }
        float *y = a->y + r * a->ldy + j;
        *y = a->accumulate ? *y + acc : acc;
    }
}

/// Q4_0 rows [j0, j1): eight at a time (q4_0x8_avx2), the rest one at a time.
TGT2 static void q4_0rows_avx2(const strata_linear_args *a, const qx_row *X, long j0, long j1) {
    long j = j0;
    for (; j + 8 <= j1; j += 8) {
        long r = 0;
        for (; r + 4 <= a->m; r += 4) q4_0x8_avx2(4, a, X, j, r);
        switch (a->m - r) {
        case 3: q4_0x8_avx2(3, a, X, j, r); break;
        case 2: q4_0x8_avx2(2, a, X, j, r); break;
        case 1: q4_0x8_avx2(1, a, X, j, r); break;
        default: break;
        }
    }
    for (; j < j1; j++) q4_0row1_avx2(a, X, j);
}

TGT2 INLINE void q8rows_avx2_t(const int t, const strata_linear_args *a, const qx_row *X, long j0, long j1) {
    // as the VNNI kernel: past 4 rows, groups of 4 x rows over bands of 64 weight rows
    const long band = a->m > 4 ? 64 : 1;
    for (long jb = j0; jb < j1; jb += band) {
        const long je = jb + band < j1 ? jb + band : j1;
        long r = 0;
        for (; r + 4 <= a->m; r += 4) for (long j = jb; j < je; j++) q8row_avx2(t, 4, a, X, j, r);
        switch (a->m - r) {
        case 3: for (long j = jb; j < je; j++) q8row_avx2(t, 3, a, X, j, r); break;
        case 2: for (long j = jb; j < je; j++) q8row_avx2(t, 2, a, X, j, r); break;
        case 1: for (long j = jb; j < je; j++) q8row_avx2(t, 1, a, X, j, r); break;
        default: break;
        }
    }
}

TGT2 static void q8rows_avx2(const strata_linear_args *a, const qx_row *X, long j0, long j1) {
    switch (a->wtype) {
    case STRATA_W_Q8_0: q8rows_avx2_t(STRATA_W_Q8_0, a, X, j0, j1); break;
    case STRATA_W_Q4_0: q4_0rows_avx2(a, X, j0, j1); break;
    case STRATA_W_Q4_K: q8rows_avx2_t(STRATA_W_Q4_K, a, X, j0, j1); break;
    case STRATA_W_Q6_K: q8rows_avx2_t(STRATA_W_Q6_K, a, X, j0, j1); break;
    default: break;
    }
}
#endif

/// The kernel's rows [j0, j1) over the quantized x of `kernel` (Q8_AVX2 or Q8_VNNI).
static void q8rows_fast(int kernel, const strata_linear_args *a, const qx_row *X, long j0, long j1) {
#if STRATA_X86
    if (kernel == Q8_VNNI) q8rows_vnni(a, X, j0, j1); else q8rows_avx2(a, X, j0, j1);
#else
    (void)kernel; (void)a; (void)X; (void)j0; (void)j1;
#endif
}

int strata_q8_vnni_supported(void) {
#if STRATA_X86
    __builtin_cpu_init();
    return strata_isa_supported(STRATA_ISA_AVX512) && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

/// The kernel that takes these arguments on path `isa`: VNNI (AVX-512 with VNNI), AVX2 (the AVX2
/// path, or AVX-512 without VNNI), else the portable definition.
static int q8_kernel(int isa, const strata_linear_args *a) {
    if (a->m > STRATA_Q8_MAX_ROWS || isa == STRATA_ISA_PORTABLE) return Q8_PORTABLE;
    if ((a->wtype == STRATA_W_Q8_0 || a->wtype == STRATA_W_Q4_0) && a->k % 64 != 0) return Q8_PORTABLE;
    if (isa == STRATA_ISA_AVX512 && strata_q8_vnni_supported()) return Q8_VNNI;
    return strata_isa_supported(STRATA_ISA_AVX2) ? Q8_AVX2 : Q8_PORTABLE;
}

int strata_q8_fast_supported(void) { return q8_kernel(strata_kernels_isa(), &(strata_linear_args){.m = 1, .k = 256, .wtype = STRATA_W_Q4_K}) != Q8_PORTABLE; }

typedef struct {
    const strata_linear_args *a;
    const qx_row *X;
    long per;
    int kernel;
} q8_job;

static void q8_chunk(void *ctx, long c) {
    const q8_job *job = (const q8_job *)ctx;
    long j0 = c * job->per, j1 = j0 + job->per;
    if (j1 > job->a->n) j1 = job->a->n;
    if (j1 <= j0) return;
    if (job->X) { q8rows_fast(job->kernel, job->a, job->X, j0, j1); return; }
    q8rows_portable(job->a, j0, j1);
}

/// Rows [r0, r0 + m) of the linear a: x and y moved to row r0.
static strata_linear_args row_slice(const strata_linear_args *a, long r0, long m) {
    strata_linear_args s = *a;
    s.x = a->x + r0 * a->ldx;
    s.y = a->y + r0 * a->ldy;
    s.m = m;
    return s;
}

/// Whether a linear of more x rows than the fast kernel takes runs as slices of
/// STRATA_Q8_MAX_ROWS rows (when the fast kernel takes a slice); each slice reads the weights again.
static int sliced(int isa, const strata_linear_args *a) {
    if (a->m <= STRATA_Q8_MAX_ROWS) return 0;
    const strata_linear_args s = row_slice(a, 0, STRATA_Q8_MAX_ROWS);
    return q8_kernel(isa, &s) != Q8_PORTABLE;
}

void strata_qlinear_q8_rows_isa(int isa, const strata_linear_args *a, long j0, long j1) {
    if (j1 <= j0 || a->m <= 0) return;
    if (!strata_qtypes[a->wtype].specialized) { strata_qgeneric_q8_rows_isa(isa, a, j0, j1); return; }
    if (sliced(isa, a)) {
        for (long r0 = 0; r0 < a->m; r0 += STRATA_Q8_MAX_ROWS) {
            const strata_linear_args s = row_slice(a, r0, a->m - r0 < STRATA_Q8_MAX_ROWS ? a->m - r0 : STRATA_Q8_MAX_ROWS);
            strata_qlinear_q8_rows_isa(isa, &s, j0, j1);
        }
        return;
    }
    const int kernel = q8_kernel(isa, a);
    if (kernel == Q8_PORTABLE) { q8rows_portable(a, j0, j1); return; }
    qx_row rows[STRATA_Q8_MAX_ROWS];
    if (quantize_rows(a, rows, kernel) != 0) { q8rows_portable(a, j0, j1); return; }
    q8rows_fast(kernel, a, rows, j0, j1);
}

typedef struct {
    group_plan plan;
    const qx_row *X;
    int kernel;
} q8_group_job;

static void q8_group_chunk(void *ctx, long c) {
    const q8_group_job *g = (const q8_group_job *)ctx;
    long j0, j1;
    const strata_linear_args *a = group_chunk(&g->plan, c, &j0, &j1);
    if (j1 <= j0) return;
    q8rows_fast(g->kernel, a, g->X, j0, j1);
}

int strata_qlinear_q8_group(const strata_linear_args *a, int count, const long *chunks, const long *per) {
    if (count < 1 || count > STRATA_LINEAR_GROUP || !strata_qtypes[a[0].wtype].specialized) return -1;
    if (sliced(strata_kernels_isa(), &a[0])) {
        strata_linear_args s[STRATA_LINEAR_GROUP];
        for (long r0 = 0; r0 < a[0].m; r0 += STRATA_Q8_MAX_ROWS) {
            const long m = a[0].m - r0 < STRATA_Q8_MAX_ROWS ? a[0].m - r0 : STRATA_Q8_MAX_ROWS;
            for (int i = 0; i < count; i++) s[i] = row_slice(&a[i], r0, m);
            // the first slice decides for all: a refusal there changes nothing yet
            if (strata_qlinear_q8_group(s, count, chunks, per) != 0) {
                if (r0 == 0) return -1;
                for (int i = 0; i < count; i++) strata_qlinear_q8(&s[i], chunks[i], per[i]);
            }
        }
        return 0;
    }
    const int kernel = q8_kernel(strata_kernels_isa(), &a[0]);
    if (kernel == Q8_PORTABLE) return -1;
    for (int i = 0; i < count; i++)
        if (q8_kernel(strata_kernels_isa(), &a[i]) != kernel || a[i].wtype != a[0].wtype) return -1;
    qx_row rows[STRATA_Q8_MAX_ROWS];
    if (quantize_rows(&a[0], rows, kernel) != 0) return -1;  // the same x, k and m for every member (checked by the caller)
    q8_group_job g;
    g.kernel = kernel;
    group_plan_init(&g.plan, a, count, chunks, per);
    g.X = rows;
    strata_pool_run(q8_group_chunk, &g, g.plan.start[count]);
    return 0;
}

void strata_qlinear_q8(const strata_linear_args *a, long chunks, long per) {
    if (!strata_qtypes[a->wtype].specialized) { strata_qgeneric_q8(a, chunks, per); return; }
    if (sliced(strata_kernels_isa(), a)) {
        for (long r0 = 0; r0 < a->m; r0 += STRATA_Q8_MAX_ROWS) {
            const strata_linear_args s = row_slice(a, r0, a->m - r0 < STRATA_Q8_MAX_ROWS ? a->m - r0 : STRATA_Q8_MAX_ROWS);
            strata_qlinear_q8(&s, chunks, per);
        }
        return;
    }
    qx_row rows[STRATA_Q8_MAX_ROWS];
    // the VNNI or AVX2 kernel over the quantized rows, or (too many rows, no memory, no SIMD
    // path) the portable definition, which quantizes x itself
    const int kernel = q8_kernel(strata_kernels_isa(), a);
    const int fast = kernel != Q8_PORTABLE && quantize_rows(a, rows, kernel) == 0;
    q8_job job = {a, fast ? rows : NULL, per, kernel};
    if (chunks == 1) q8_chunk(&job, 0);
    else strata_pool_run(q8_chunk, &job, chunks);
}

// ---- the 8-bit products' peak -------------------------------------------------------------------

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if STRATA_X86
/// `iters` rounds of 6 independent chains of vpmaddubsw + vpmaddwd + vpaddd (32 multiply-adds
/// each; 6 chains keep the 14 vectors in AVX2's 16 registers); the sums are returned so the loop
/// is not dropped.
TGT2 static int peak_avx2(long iters) {
    __m256i acc[6], w[6];
    const __m256i x = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    for (int i = 0; i < 6; i++) { acc[i] = _mm256_setzero_si256(); w[i] = _mm256_set1_epi8((char)(i + 1)); }
    for (long it = 0; it < iters; it++) {
        UNROLL for (int i = 0; i < 6; i++) {
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(w[i], x), ones));
            __asm__("" : "+x"(w[i]));  // w stays opaque: the product is not hoisted out of the loop
        }
    }
    __m256i s = acc[0];
    for (int i = 1; i < 6; i++) s = _mm256_add_epi32(s, acc[i]);
    return _mm256_extract_epi32(s, 0);
}
#endif

typedef struct {
    long iters;
    double seconds[64];
    volatile int sink[64];  // per chunk: the threads write apart
} peak_job;

static void peak_chunk(void *ctx, long c) {
    peak_job *p = (peak_job *)ctx;
#if STRATA_X86
    if (c >= 64) return;
    const double t0 = now_seconds();
    p->sink[c] = peak_avx2(p->iters);
    p->seconds[c] = now_seconds() - t0;
#else
    (void)p; (void)c;
#endif
}

double strata_q8_peak(int isa, double seconds) {
#if STRATA_X86
    const strata_linear_args probe = {.m = 1, .k = 256, .wtype = STRATA_W_Q4_K};
    if (!strata_isa_supported(isa) || q8_kernel(isa, &probe) != Q8_AVX2) return 0;
    int threads = strata_pool_threads();
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    peak_job job = {.iters = 1 << 16};
    // grow the rounds until one thread's pass takes a tenth of the time asked for
    for (;;) {
        peak_chunk(&job, 0);
        if (job.seconds[0] >= seconds / 10 || job.iters > (1L << 40)) break;
        job.iters *= 2;
    }
    job.iters = (long)((double)job.iters * seconds / (job.seconds[0] > 0 ? job.seconds[0] : 1e-9) / 1);
    if (job.iters < 1) job.iters = 1;
    strata_pool_run(peak_chunk, &job, threads);
    double total = 0;
    for (int c = 0; c < threads; c++) total += (double)job.iters * 6 * 32 / (job.seconds[c] > 0 ? job.seconds[c] : 1e-9);
    return total;
#else
    (void)isa; (void)seconds;
    return 0;
#endif
}
