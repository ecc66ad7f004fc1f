// What the kernel files share (not part of the module's interface: include/ holds that): the
// platform test, the inline attribute, the portable f16 and bf16 widening, the load of an f16
// from bytes, and Q4_K's packed scales.
#ifndef STRATA_KERNELS_COMMON_H
#define STRATA_KERNELS_COMMON_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "qtypes.h"

#if defined(__x86_64__) || defined(__i386__)
#define STRATA_X86 1
#include <immintrin.h>
#else
#define STRATA_X86 0
#endif

#define INLINE static inline __attribute__((always_inline))
/// Before a loop whose trip count is a constant after inlining: unrolled whole, so arrays indexed
/// by its variable can live in registers.
#define UNROLL _Pragma("clang loop unroll(full)")

/// e^x as Swift's Ops.fastExp (range reduction by 1.5 * 2^23, degree-6 polynomial, relative error
/// < 3e-7 on [-87, 88]; NaN in, NaN out): the softmaxes' exponential.
INLINE float exp_fast(float x) {
    const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float t = xc * 1.4426950408889634f + 12582912.0f;
    const float nf = t - 12582912.0f;
    const float r = xc - nf * 0.693145751953125f - nf * 1.428606765330187e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f; p = p * r + 1.0f / 24.0f; p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f; p = p * r + 1.0f; p = p * r + 1.0f;
    uint32_t tb; memcpy(&tb, &t, 4);
    const uint32_t eb = (tb - 0x4B400000u + 127u) << 23;
    float e; memcpy(&e, &eb, 4);
    return (x != x) ? x : p * e;
}

#if defined(__x86_64__) || defined(__i386__)
/// exp_fast on eight lanes (AVX2 + FMA): the same reduction and polynomial; NaN in, NaN out
/// (the softmaxes' and the decode attention's).
__attribute__((target("avx2,fma"))) INLINE __m256 exp8(__m256 x) {
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 t = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.4426950408889634f)), _mm256_set1_ps(12582912.0f));
    const __m256 nf = _mm256_sub_ps(t, _mm256_set1_ps(12582912.0f));
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(nf, _mm256_set1_ps(0.693145751953125f))),
                                   _mm256_mul_ps(nf, _mm256_set1_ps(1.428606765330187e-06f)));
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i eb = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000)),
                                                          _mm256_set1_epi32(127)), 23);
    const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(eb));
    // NaN in, NaN out (min/max dropped it)
    return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/// exp_fast on sixteen lanes (AVX-512): the same reduction and polynomial; NaN in, NaN out.
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) INLINE __m512 exp16(__m512 x) {
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 t = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.4426950408889634f)), _mm512_set1_ps(12582912.0f));
    const __m512 nf = _mm512_sub_ps(t, _mm512_set1_ps(12582912.0f));
    const __m512 r = _mm512_sub_ps(_mm512_sub_ps(xc, _mm512_mul_ps(nf, _mm512_set1_ps(0.693145751953125f))),
                                   _mm512_mul_ps(nf, _mm512_set1_ps(1.428606765330187e-06f)));
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i eb = _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000)),
                                                          _mm512_set1_epi32(127)), 23);
    const __m512 e = _mm512_mul_ps(p, _mm512_castsi512_ps(eb));
    // NaN in, NaN out (min/max dropped it)
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

/// The sum of eight lanes.
__attribute__((target("avx2,fma"))) INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/// The largest of eight lanes (a NaN lane may or may not win, as vmaxps decides).
__attribute__((target("avx2,fma"))) INLINE float hmax8(__m256 v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}
#endif

/// One block of x (n floats: 32 or 256) to int8 codes, dx = max|x| / 127, q = round(x / dx);
/// returns dx (the 8-bit paths' activations, quant_q8.c and quant_generic.c).
INLINE float quantize_block(const float *x, int n, int8_t *q) {
    float amax = 0;
    for (int i = 0; i < n; i++) { const float v = fabsf(x[i]); if (v > amax) amax = v; }
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) q[i] = (int8_t)lrintf(x[i] * id);
    return d;
}

/// Exact f16 bits -> f32 (zero, subnormals, Inf, NaN).
INLINE float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp == 0) {
        float v = (float)mant * 5.960464477539063e-08f;  // mant * 2^-24, exact
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

INLINE float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/// The little-endian f16 at p (any alignment) as f32.
/// An E8M0 exponent as ggml's e8m0_to_fp32_half: 2^(e - 128), built from its bits (a subnormal
/// for e < 2). MXFP4's block scale.
INLINE float strata_e8m0_half(uint8_t e) {
    union { uint32_t u; float f; } v;
    v.u = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    return v.f;
}

INLINE float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_to_f32(h);
}

#if STRATA_X86
/// The f16 at p by F16C (inlined into every SIMD path, whose targets include f16c). The empty asm
/// makes the compiler build the whole register (vmovd from a general register): left alone, clang
/// narrows the conversion to a vpinsrw into whatever register it picks, once an accumulator,
/// chaining every block behind the previous block's FMA (a Q8_0 walk over the TinyLlama file read
/// 21 GB/s instead of 26-30).
__attribute__((target("f16c"))) INLINE float f16c_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    __m128i v = _mm_cvtsi32_si128(h);
    __asm__("" : "+x"(v));
    return _mm_cvtss_f32(_mm_cvtph_ps(v));
}
#endif

/// Weights and bytes per block of `wtype`, from the traits table (inlined: the kernels ask per
/// weight row, where a call into another file was 0.9% of a Q4_K_M decode step).
INLINE long qblock_elements(int wtype) { return strata_qtypes[wtype].elements; }
INLINE long qblock_bytes(int wtype) { return strata_qtypes[wtype].bytes; }

/// The chunks of a grouped job (strata_linear_group): member i owns chunks [start[i], start[i+1]),
/// `per[i]` output rows each.
typedef struct {
    const strata_linear_args *a;
    int count;
    long per[STRATA_LINEAR_GROUP], start[STRATA_LINEAR_GROUP + 1];
} group_plan;

INLINE void group_plan_init(group_plan *g, const strata_linear_args *a, int count, const long *chunks, const long *per) {
    g->a = a;
    g->count = count;
    g->start[0] = 0;
    for (int i = 0; i < count; i++) { g->per[i] = per[i]; g->start[i + 1] = g->start[i] + chunks[i]; }
}

/// The member of chunk c and its output rows [*j0, *j1) (empty past the member's end).
INLINE const strata_linear_args *group_chunk(const group_plan *g, long c, long *j0, long *j1) {
    int i = 0;
    while (i + 1 < g->count && c >= g->start[i + 1]) i++;
    *j0 = (c - g->start[i]) * g->per[i];
    *j1 = *j0 + g->per[i] < g->a[i].n ? *j0 + g->per[i] : g->a[i].n;
    return &g->a[i];
}

/// The 8-bit path's grouped linear (quant_q8.c, for strata_linear_group): every member on the
/// VNNI kernel with one weight type, x quantized once; -1 (nothing done) when that cannot be.
int strata_qlinear_q8_group(const strata_linear_args *a, int count, const long *chunks, const long *per);

/// Q4_K's 6-bit scale and min of sub-block j from the 12 packed bytes (ggml's get_scale_min_k4).
INLINE void k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/// Q4_K's twelve bytes of packed 6-bit scales and mins at q, four at a time: u[0..1] the eight
/// scales, u[2..3] the eight mins, one byte each (k4_scale_min's values, all at once).
INLINE void k4_unpack_scales(const uint8_t *q, uint32_t u[4]) {
    memcpy(u, q, 12);
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
    const uint32_t ax = u[1] & k1;
    u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    u[2] = ax;
    u[0] &= k1;
}
#endif

/// A per-thread scratch buffer (64-byte aligned) that grows and is never shrunk, freed when its
/// thread exits (a pthread key's destructor: a thread-local pointer alone leaked the buffer of
/// every thread that ended, which LeakSanitizer reported). `slot` names the buffer (one key
/// each). Returns the buffer of at least `bytes`, or NULL when out of memory.
typedef struct { void *p; size_t cap; } strata_tls_buf;
enum { STRATA_TLS_QX = 0, STRATA_TLS_XB = 1, STRATA_TLS_WB = 2, STRATA_TLS_GW = 3, STRATA_TLS_GX = 4, STRATA_TLS_SLOTS = 5 };
void *strata_tls_grow(strata_tls_buf *b, int slot, size_t bytes);
