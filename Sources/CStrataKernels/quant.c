// Strata's quantized-weight kernels: ggml's block layouts (Q8_0, Q4_0, Q4_K, Q6_K), dequantized
// to f32 and multiplied against f32 activations. See include/strata_kernels.h for the contract.
//
// Block layouts, as ggml defines them (ggml-common.h), little-endian:
//   Q8_0 (32 weights, 34 bytes):  f16 d; int8 qs[32]                    w = d * q
//   Q4_0 (32 weights, 18 bytes):  f16 d; u8 qs[16]                      w[i] = d * ((qs[i] & 15) - 8),
//                                                                       w[i + 16] = d * ((qs[i] >> 4) - 8)
//   Q4_K (256 weights, 144 bytes): f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
//        eight sub-blocks of 32 with 6-bit scale sc and min m packed in `scales`;
//        w = d * sc * q - dmin * m, q a nibble; each 32 bytes of qs hold two sub-blocks (low
//        nibbles the first, high nibbles the second)
//   Q6_K (256 weights, 210 bytes): u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d
//        sixteen sub-blocks of 16 with an 8-bit scale; q = (4 low bits from ql | 2 high bits
//        from qh) - 32; w = d * scale * q
//
// The exact path: every weight is formed in f32 (as gguf-py's dequantize does, up to the order of
// the two multiplications) and the dot products accumulate in f32, so the result is that of an f32
// matrix holding the dequantized weights.
#define _GNU_SOURCE
#include "strata_kernels.h"
#include "common.h"

#include <string.h>


// The four types with kernels of their own: their decoding (the traits table's `dequant`).

void strata_dequant_q8_0(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    const int8_t *q = (const int8_t *)(b + 2);
    for (int i = 0; i < 32; i++) y[i] = d * (float)q[i];
}

void strata_dequant_q4_0(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    const uint8_t *q = b + 2;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)((q[i] & 15) - 8);
        y[i + 16] = d * (float)((q[i] >> 4) - 8);
    }
}

void strata_dequant_q4_k(const uint8_t *b, float *y) {
    const float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *sc = b + 4, *q = b + 16;
    for (int c = 0; c < 4; c++) {
        int s0, m0, s1, m1;
        k4_scale_min(2 * c, sc, &s0, &m0);
        k4_scale_min(2 * c + 1, sc, &s1, &m1);
        const float d0 = d * (float)s0, n0 = dmin * (float)m0, d1 = d * (float)s1, n1 = dmin * (float)m1;
        for (int l = 0; l < 32; l++) y[64 * c + l] = d0 * (float)(q[32 * c + l] & 15) - n0;
        for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d1 * (float)(q[32 * c + l] >> 4) - n1;
    }
}

void strata_dequant_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = f16_at(b + 208);
    for (int n = 0; n < 2; n++) {
        float *yy = y + 128 * n;
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            yy[l] = d * (float)sc[is] * (float)q1;
            yy[l + 32] = d * (float)sc[is + 2] * (float)q2;
            yy[l + 64] = d * (float)sc[is + 4] * (float)q3;
            yy[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

/// One block of `t` at `b` into its floats.
INLINE void dequant_block(int t, const uint8_t *b, float *y) { strata_qtypes[t].dequant(b, y); }

static void dequant_range(int wtype, const void *src, float *dst, long b0, long b1) {
    const long be = qblock_elements(wtype), bb = qblock_bytes(wtype);
    const uint8_t *p = (const uint8_t *)src + b0 * bb;
    for (long b = b0; b < b1; b++, p += bb) dequant_block(wtype, p, dst + b * be);
}

typedef struct { int t; const void *src; float *dst; long blocks, per; } dq_job;

static void dq_chunk(void *ctx, long c) {
    const dq_job *j = (const dq_job *)ctx;
    const long b0 = c * j->per, b1 = b0 + j->per < j->blocks ? b0 + j->per : j->blocks;
    dequant_range(j->t, j->src, j->dst, b0, b1);
}

void strata_dequantize(int wtype, const void *src, float *dst, long count) {
    const long blocks = count / qblock_elements(wtype);
    // split across the pool when there is enough (a prefill's band of weights: >= 64K weights per chunk)
    const long threads = strata_pool_threads();
    const long minBlocks = (64L << 10) / qblock_elements(wtype);
    long chunks = blocks / minBlocks;
    if (chunks > 4 * threads) chunks = 4 * threads;
    if (chunks <= 1) { dequant_range(wtype, src, dst, 0, blocks); return; }
    dq_job j = {wtype, src, dst, blocks, (blocks + chunks - 1) / chunks};
    strata_pool_run(dq_chunk, &j, (blocks + j.per - 1) / j.per);
}

/// Portable: each block dequantized once into a buffer (the type's `dequant`), then dotted with
/// every x row. Any quantized type; the generic kernels' portable exact path too.
void strata_qrows_portable(const strata_linear_args *a, long j0, long j1) {
    const int t = a->wtype;
    const long be = qblock_elements(t), bb = qblock_bytes(t), nb = a->k / be;
    float buf[256];
    float acc[64];
    for (long j = j0; j < j1; j++) {
        const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)nb * (size_t)bb;
        for (long r0 = 0; r0 < a->m; r0 += 64) {
            const long rn = a->m - r0 < 64 ? a->m - r0 : 64;
            for (long r = 0; r < rn; r++) acc[r] = 0;
            for (long b = 0; b < nb; b++) {
                dequant_block(t, w + b * bb, buf);
                for (long r = 0; r < rn; r++) {
                    const float *x = a->x + (r0 + r) * a->ldx + b * be;
                    float s = 0;
                    for (long i = 0; i < be; i++) s += buf[i] * x[i];
                    acc[r] += s;
                }
            }
            for (long r = 0; r < rn; r++) {
                float *y = a->y + (r0 + r) * a->ldy + j;
                *y = a->accumulate ? *y + acc[r] : acc[r];
            }
        }
    }
}

#if STRATA_X86
// ---- AVX-512 --------------------------------------------------------------------------------
// Per block, the integer codes are widened to f32 once (shared by every x row); for each x row
// the sum of q * x over a group of one scale is formed, then multiplied by the group's scale into
// the row's accumulator (Q4_K: minus dmin * m * sum(x) over the group).
#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

TGT512 INLINE __m512 i8x16(const int8_t *p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p))); }

/// Q4_K's eight 6-bit scales (bytes 0-7 of the result) and mins (bytes 8-15) unpacked from the 12
/// packed bytes with 32-bit masks (the same bits as k4_scale_min).
INLINE void k4_unpack(const uint8_t *q, uint8_t out[16]) {
    uint32_t u[4];
    memcpy(u, q, 12);
    const uint32_t m1 = 0x3f3f3f3f, m2 = 0x0f0f0f0f, m3 = 0x03030303;
    u[3] = ((u[2] >> 4) & m2) | (((u[1] >> 6) & m3) << 4);
    const uint32_t a = u[1] & m1;
    u[1] = (u[2] & m2) | (((u[0] >> 6) & m3) << 4);
    u[2] = a;
    u[0] &= m1;
    memcpy(out, u, 16);
}

/// RB rows of x against weight row j (RB <= 8), all blocks.
TGT512 INLINE void qrow512(const int t, const int RB, const strata_linear_args *a, long j, long r) {
    const long be = qblock_elements(t), bb = qblock_bytes(t), nb = a->k / be;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)nb * (size_t)bb;
    const float *xr[8];
    __m512 acc[8];
    for (int rr = 0; rr < RB; rr++) { xr[rr] = a->x + (r + rr) * a->ldx; acc[rr] = _mm512_setzero_ps(); }
    const __m512i mask4 = _mm512_set1_epi32(15);
    float sc[16] __attribute__((aligned(64))), mn[8] __attribute__((aligned(32)));
    for (long b = 0; b < nb; b++, w += bb) {
        for (long o = 0; o < bb; o += 64) _mm_prefetch((const char *)w + 4096 + o, _MM_HINT_T0);  // as quant_q8.c's QPF
        const long xo = b * be;
        if (t == STRATA_W_Q8_0 || t == STRATA_W_Q4_0) {
            __m512 q0, q1;
            const __m512 d = _mm512_set1_ps(f16c_at(w));
            if (t == STRATA_W_Q8_0) {
                q0 = i8x16((const int8_t *)(w + 2));
                q1 = i8x16((const int8_t *)(w + 18));
            } else {
                const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 2)));
                const __m512i eight = _mm512_set1_epi32(8);
                q0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, mask4), eight));
                q1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), eight));
            }
            for (int rr = 0; rr < RB; rr++) {
                __m512 s = _mm512_mul_ps(q0, _mm512_loadu_ps(xr[rr] + xo));
                s = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xr[rr] + xo + 16), s);
                acc[rr] = _mm512_fmadd_ps(s, d, acc[rr]);
            }
        } else if (t == STRATA_W_Q4_K) {
            // the block's eight d * sc and dmin * m, once for every row
            uint8_t u[16];
            k4_unpack(w + 4, u);
            const __m256 both = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)u)));
            const __m256 mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(u + 8))));
            _mm256_store_ps(sc, _mm256_mul_ps(both, _mm256_set1_ps(f16c_at(w))));
            _mm256_store_ps(mn, _mm256_mul_ps(mins, _mm256_set1_ps(f16c_at(w + 2))));
            const uint8_t *q = w + 16;
            for (int c = 0; c < 4; c++) {
                const __m512 d0 = _mm512_set1_ps(sc[2 * c]), n0 = _mm512_set1_ps(mn[2 * c]);
                const __m512 d1 = _mm512_set1_ps(sc[2 * c + 1]), n1 = _mm512_set1_ps(mn[2 * c + 1]);
                const __m512i va = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + 32 * c)));
                const __m512i vb = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + 32 * c + 16)));
                const __m512 la = _mm512_cvtepi32_ps(_mm512_and_si512(va, mask4));
                const __m512 lb = _mm512_cvtepi32_ps(_mm512_and_si512(vb, mask4));
                const __m512 ha = _mm512_cvtepi32_ps(_mm512_srli_epi32(va, 4));
                const __m512 hb = _mm512_cvtepi32_ps(_mm512_srli_epi32(vb, 4));
                const long o = xo + 64 * c;
                for (int rr = 0; rr < RB; rr++) {
                    const __m512 x0 = _mm512_loadu_ps(xr[rr] + o), x1 = _mm512_loadu_ps(xr[rr] + o + 16);
                    const __m512 x2 = _mm512_loadu_ps(xr[rr] + o + 32), x3 = _mm512_loadu_ps(xr[rr] + o + 48);
                    // (d sc q - dmin m) . x = d sc (q . x) - dmin m (sum x), per sub-block of 32
                    const __m512 sl = _mm512_fmsub_ps(_mm512_fmadd_ps(lb, x1, _mm512_mul_ps(la, x0)), d0, _mm512_mul_ps(_mm512_add_ps(x0, x1), n0));
                    const __m512 sh = _mm512_fmsub_ps(_mm512_fmadd_ps(hb, x3, _mm512_mul_ps(ha, x2)), d1, _mm512_mul_ps(_mm512_add_ps(x2, x3), n1));
                    acc[rr] = _mm512_add_ps(acc[rr], _mm512_add_ps(sl, sh));
                }
            }
        } else {  // Q6_K
            const uint8_t *ql = w, *qh = w + 128;
            _mm512_store_ps(sc, _mm512_mul_ps(i8x16((const int8_t *)(w + 192)), _mm512_set1_ps(f16c_at(w + 208))));
            const __m512i three = _mm512_set1_epi32(3), m32 = _mm512_set1_epi32(32);
            for (int n = 0; n < 2; n++) {
                for (int h = 0; h < 2; h++) {  // l in [16h, 16h + 16)
                    const int l = 16 * h;
                    const __m512i a0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(ql + l)));
                    const __m512i a1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(ql + l + 32)));
                    const __m512i hh = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qh + l)));
                    const __m512 q1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(_mm512_and_si512(a0, mask4),
                                                         _mm512_slli_epi32(_mm512_and_si512(hh, three), 4)), m32));
                    const __m512 q2 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(_mm512_and_si512(a1, mask4),
                                                         _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hh, 2), three), 4)), m32));
                    const __m512 q3 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(_mm512_srli_epi32(a0, 4),
                                                         _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hh, 4), three), 4)), m32));
                    const __m512 q4 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(_mm512_srli_epi32(a1, 4),
                                                         _mm512_slli_epi32(_mm512_srli_epi32(hh, 6), 4)), m32));
                    const float *s = sc + 8 * n + h;
                    const __m512 s1 = _mm512_set1_ps(s[0]), s2 = _mm512_set1_ps(s[2]), s3 = _mm512_set1_ps(s[4]), s4 = _mm512_set1_ps(s[6]);
                    const long o = xo + 128 * n + l;
                    for (int rr = 0; rr < RB; rr++) {
                        acc[rr] = _mm512_fmadd_ps(_mm512_mul_ps(q1, _mm512_loadu_ps(xr[rr] + o)), s1, acc[rr]);
                        acc[rr] = _mm512_fmadd_ps(_mm512_mul_ps(q2, _mm512_loadu_ps(xr[rr] + o + 32)), s2, acc[rr]);
                        acc[rr] = _mm512_fmadd_ps(_mm512_mul_ps(q3, _mm512_loadu_ps(xr[rr] + o + 64)), s3, acc[rr]);
                        acc[rr] = _mm512_fmadd_ps(_mm512_mul_ps(q4, _mm512_loadu_ps(xr[rr] + o + 96)), s4, acc[rr]);
                    }
                }
                ql += 64;
                qh += 32;
            }
        }
    }
    for (int rr = 0; rr < RB; rr++) {
        float *y = a->y + (r + rr) * a->ldy + j;
        const float v = _mm512_reduce_add_ps(acc[rr]);
        *y = a->accumulate ? *y + v : v;
    }
}

TGT512 INLINE void qrows512_t(const int t, const strata_linear_args *a, long j0, long j1) {
    for (long j = j0; j < j1; j++) {
        long r = 0;
        for (; r + 8 <= a->m; r += 8) qrow512(t, 8, a, j, r);
        switch (a->m - r) {
        case 7: qrow512(t, 7, a, j, r); break;
        case 6: qrow512(t, 6, a, j, r); break;
        case 5: qrow512(t, 5, a, j, r); break;
        case 4: qrow512(t, 4, a, j, r); break;
        case 3: qrow512(t, 3, a, j, r); break;
        case 2: qrow512(t, 2, a, j, r); break;
        case 1: qrow512(t, 1, a, j, r); break;
        default: break;
        }
    }
}

TGT512 static void qrows_avx512(const strata_linear_args *a, long j0, long j1) {
    switch (a->wtype) {
    case STRATA_W_Q8_0: qrows512_t(STRATA_W_Q8_0, a, j0, j1); break;
    case STRATA_W_Q4_0: qrows512_t(STRATA_W_Q4_0, a, j0, j1); break;
    case STRATA_W_Q4_K: qrows512_t(STRATA_W_Q4_K, a, j0, j1); break;
    case STRATA_W_Q6_K: qrows512_t(STRATA_W_Q6_K, a, j0, j1); break;
    default: break;
    }
}

// ---- AVX2 + FMA + F16C -----------------------------------------------------------------------
// The AVX-512 kernel's scheme in 8 lanes: each block's codes widened to f32 once for every x row
// of the call, a sum of q x per group of one scale, times the scale into the row's accumulator.
#define TGT2 __attribute__((target("avx2,fma,f16c")))

TGT2 INLINE __m256 u8x8(const uint8_t *p) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p))); }
TGT2 INLINE __m256 i8x8(const int8_t *p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p))); }

/// RB rows of x against weight row j (RB <= 4), all blocks.
TGT2 INLINE void qrow2(const int t, const int RB, const strata_linear_args *a, long j, long r) {
    const long be = qblock_elements(t), bb = qblock_bytes(t), nb = a->k / be;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)j * (size_t)nb * (size_t)bb;
    const float *xr[4];
    __m256 acc[4];
    for (int rr = 0; rr < RB; rr++) { xr[rr] = a->x + (r + rr) * a->ldx; acc[rr] = _mm256_setzero_ps(); }
    const __m256i m4 = _mm256_set1_epi32(15);
    float sc[16] __attribute__((aligned(32))), mn[8] __attribute__((aligned(32)));
    for (long b = 0; b < nb; b++, w += bb) {
        for (long o = 0; o < bb; o += 64) _mm_prefetch((const char *)w + 4096 + o, _MM_HINT_T0);
        const long xo = b * be;
        if (t == STRATA_W_Q8_0 || t == STRATA_W_Q4_0) {
            __m256 q[4];
            const __m256 d = _mm256_set1_ps(f16c_at(w));
            if (t == STRATA_W_Q8_0) {
                for (int u = 0; u < 4; u++) q[u] = i8x8((const int8_t *)(w + 2 + 8 * u));
            } else {
                const __m256i e = _mm256_set1_epi32(8);
                for (int u = 0; u < 2; u++) {
                    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w + 2 + 8 * u)));
                    q[u] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, m4), e));
                    q[u + 2] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v, 4), e));
                }
            }
            for (int rr = 0; rr < RB; rr++) {
                __m256 s = _mm256_mul_ps(q[0], _mm256_loadu_ps(xr[rr] + xo));
                for (int u = 1; u < 4; u++) s = _mm256_fmadd_ps(q[u], _mm256_loadu_ps(xr[rr] + xo + 8 * u), s);
                acc[rr] = _mm256_fmadd_ps(s, d, acc[rr]);
            }
        } else if (t == STRATA_W_Q4_K) {
            const float d = f16c_at(w), dmin = f16c_at(w + 2);
            for (int s = 0; s < 8; s++) {
                int c, m;
                k4_scale_min(s, w + 4, &c, &m);
                sc[s] = d * (float)c;
                mn[s] = dmin * (float)m;
            }
            const uint8_t *qs = w + 16;
            for (int c = 0; c < 4; c++) {
                __m256 lo[4], hi[4];
                for (int u = 0; u < 4; u++) {
                    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 32 * c + 8 * u)));
                    lo[u] = _mm256_cvtepi32_ps(_mm256_and_si256(v, m4));
                    hi[u] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
                }
                const __m256 d0 = _mm256_set1_ps(sc[2 * c]), n0 = _mm256_set1_ps(mn[2 * c]);
                const __m256 d1 = _mm256_set1_ps(sc[2 * c + 1]), n1 = _mm256_set1_ps(mn[2 * c + 1]);
                const long o = xo + 64 * c;
                for (int rr = 0; rr < RB; rr++) {
                    __m256 sl = _mm256_setzero_ps(), sh = _mm256_setzero_ps(), xl = _mm256_setzero_ps(), xh = _mm256_setzero_ps();
                    for (int u = 0; u < 4; u++) {
                        const __m256 x0 = _mm256_loadu_ps(xr[rr] + o + 8 * u), x1 = _mm256_loadu_ps(xr[rr] + o + 32 + 8 * u);
                        sl = _mm256_fmadd_ps(lo[u], x0, sl);
                        sh = _mm256_fmadd_ps(hi[u], x1, sh);
                        xl = _mm256_add_ps(xl, x0);
                        xh = _mm256_add_ps(xh, x1);
                    }
                    acc[rr] = _mm256_add_ps(acc[rr], _mm256_add_ps(_mm256_fmsub_ps(sl, d0, _mm256_mul_ps(xl, n0)),
                                                                   _mm256_fmsub_ps(sh, d1, _mm256_mul_ps(xh, n1))));
                }
            }
        } else {  // Q6_K
            const uint8_t *ql = w, *qh = w + 128;
            const float d = f16c_at(w + 208);
            for (int s = 0; s < 16; s++) sc[s] = d * (float)(int8_t)w[192 + s];
            const __m256i three = _mm256_set1_epi32(3), m32 = _mm256_set1_epi32(32);
            for (int n = 0; n < 2; n++) {
                for (int l = 0; l < 32; l += 8) {
                    const __m256i a0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l)));
                    const __m256i a1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l + 32)));
                    const __m256i hh = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qh + l)));
                    const __m256 q1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a0, m4), _mm256_slli_epi32(_mm256_and_si256(hh, three), 4)), m32));
                    const __m256 q2 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a1, m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hh, 2), three), 4)), m32));
                    const __m256 q3 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a0, 4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hh, 4), three), 4)), m32));
                    const __m256 q4 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a1, 4), _mm256_slli_epi32(_mm256_srli_epi32(hh, 6), 4)), m32));
                    const float *s = sc + 8 * n + l / 16;
                    const __m256 s1 = _mm256_set1_ps(s[0]), s2 = _mm256_set1_ps(s[2]), s3 = _mm256_set1_ps(s[4]), s4 = _mm256_set1_ps(s[6]);
                    const long o = xo + 128 * n + l;
                    for (int rr = 0; rr < RB; rr++) {
                        acc[rr] = _mm256_fmadd_ps(_mm256_mul_ps(q1, _mm256_loadu_ps(xr[rr] + o)), s1, acc[rr]);
                        acc[rr] = _mm256_fmadd_ps(_mm256_mul_ps(q2, _mm256_loadu_ps(xr[rr] + o + 32)), s2, acc[rr]);
                        acc[rr] = _mm256_fmadd_ps(_mm256_mul_ps(q3, _mm256_loadu_ps(xr[rr] + o + 64)), s3, acc[rr]);
                        acc[rr] = _mm256_fmadd_ps(_mm256_mul_ps(q4, _mm256_loadu_ps(xr[rr] + o + 96)), s4, acc[rr]);
                    }
                }
                ql += 64;
                qh += 32;
            }
        }
    }
    for (int rr = 0; rr < RB; rr++) {
        float *y = a->y + (r + rr) * a->ldy + j;
        const float v = hsum8(acc[rr]);
        *y = a->accumulate ? *y + v : v;
    }
}

TGT2 INLINE void qrows2_t(const int t, const strata_linear_args *a, long j0, long j1) {
    for (long j = j0; j < j1; j++) {
        long r = 0;
        for (; r + 4 <= a->m; r += 4) qrow2(t, 4, a, j, r);
        switch (a->m - r) {
        case 3: qrow2(t, 3, a, j, r); break;
        case 2: qrow2(t, 2, a, j, r); break;
        case 1: qrow2(t, 1, a, j, r); break;
        default: break;
        }
    }
}

TGT2 static void qrows_avx2(const strata_linear_args *a, long j0, long j1) {
    switch (a->wtype) {
    case STRATA_W_Q8_0: qrows2_t(STRATA_W_Q8_0, a, j0, j1); break;
    case STRATA_W_Q4_0: qrows2_t(STRATA_W_Q4_0, a, j0, j1); break;
    case STRATA_W_Q4_K: qrows2_t(STRATA_W_Q4_K, a, j0, j1); break;
    case STRATA_W_Q6_K: qrows2_t(STRATA_W_Q6_K, a, j0, j1); break;
    default: break;
    }
}
#endif

void strata_qlinear_rows_isa(int isa, const strata_linear_args *a, long j0, long j1) {
    if (!strata_qtypes[a->wtype].specialized) { strata_qgeneric_rows_isa(isa, a, j0, j1); return; }
#if STRATA_X86
    if (isa == STRATA_ISA_AVX512) { qrows_avx512(a, j0, j1); return; }
    if (isa == STRATA_ISA_AVX2) { qrows_avx2(a, j0, j1); return; }
#endif
    (void)isa;
    strata_qrows_portable(a, j0, j1);
}
