// Q5_0 (ggml's block_q5_0): 32 weights in 22 bytes, f16 d, u32 qh (bit i: the fifth bit of
// weight i), u8 qs[16]; w[i] = d * (((qs[i] & 15) | bit i << 4) - 16),
// w[i + 16] = d * (((qs[i] >> 4) | bit (i + 16) << 4) - 16).
// Unpacked as the five-bit code q (0..31, unsigned) with offset -16 d: d * q + (-16 d) is
// d * (q - 16) to the bit (d has 11 significant bits and q 5, so both products and the sum are exact).
#include "strata_kernels.h"
#include "common.h"

INLINE uint32_t q5_high_bits(const uint8_t *b) { uint32_t h; memcpy(&h, b + 2, 4); return h; }

void strata_dequant_q5_0(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    const uint32_t qh = q5_high_bits(b);
    const uint8_t *q = b + 6;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)((int)((q[i] & 15) | (((qh >> i) & 1) << 4)) - 16);
        y[i + 16] = d * (float)((int)((q[i] >> 4) | (((qh >> (i + 16)) & 1) << 4)) - 16);
    }
}

void strata_unpack_q5_0(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    for (long b = 0; b < nb; b++, w += 22, c += 32) {
        d[b] = f16_at(w);
        m[b] = -16.0f * d[b];
        const uint32_t qh = q5_high_bits(w);
        for (int i = 0; i < 16; i++) {
            c[i] = (int8_t)((w[6 + i] & 15) | (((qh >> i) & 1) << 4));
            c[i + 16] = (int8_t)((w[6 + i] >> 4) | (((qh >> (i + 16)) & 1) << 4));
        }
    }
}

#if STRATA_X86
/// Byte i of the result is 0xFF when bit i of the 32 bits at p is set, else 0.
__attribute__((target("avx2"))) INLINE __m256i bits_to_bytes(uint32_t x) {
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x),
                                               _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                                                 0x0101010101010101LL, 0x0000000000000000LL));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

__attribute__((target("avx2,fma,f16c"))) void strata_unpack_q5_0_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    const __m256i lo4 = _mm256_set1_epi8(15), b16 = _mm256_set1_epi8(16);
    for (long b = 0; b < nb; b++, w += 22, c += 32) {
        d[b] = f16c_at(w);
        m[b] = -16.0f * d[b];
        const __m128i q = _mm_loadu_si128((const __m128i *)(w + 6));
        const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), lo4);
        const __m256i hi = _mm256_and_si256(bits_to_bytes(q5_high_bits(w)), b16);
        _mm256_storeu_si256((__m256i *)c, _mm256_or_si256(nib, hi));
    }
}
#endif
