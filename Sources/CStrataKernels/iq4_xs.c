// IQ4_XS (ggml's block_iq4_xs): 256 weights in 136 bytes, f16 d, u16 scales_h, u8 scales_l[4],
// u8 qs[128]. Sub-block s of 32 (s < 8): a 6-bit scale ls = (nibble s of scales_l) | (bits 2s,
// 2s+1 of scales_h) << 4, and IQ4_NL's values from qs[16 s ..]: w = (d * (ls - 32)) * v[code].
#include "strata_kernels.h"
#include "common.h"

INLINE int iq4xs_scale(const uint8_t *b, int s) {
    const uint16_t h = (uint16_t)(b[2] | (b[3] << 8));
    return (int)(((b[4 + s / 2] >> (4 * (s % 2))) & 15) | (((h >> (2 * s)) & 3) << 4)) - 32;
}

void strata_dequant_iq4_xs(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    for (int s = 0; s < 8; s++) {
        const float dl = d * (float)iq4xs_scale(b, s);
        const uint8_t *q = b + 8 + 16 * s;
        for (int i = 0; i < 16; i++) {
            y[32 * s + i] = dl * (float)strata_iq4_values[q[i] & 15];
            y[32 * s + i + 16] = dl * (float)strata_iq4_values[q[i] >> 4];
        }
    }
}

void strata_unpack_iq4_xs(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    for (long b = 0; b < nb; b++, w += 136, c += 256, d += 8, m += 8) {
        const float bd = f16_at(w);
        for (int s = 0; s < 8; s++) {
            d[s] = bd * (float)iq4xs_scale(w, s);
            m[s] = 0;
            const uint8_t *q = w + 8 + 16 * s;
            for (int i = 0; i < 16; i++) { c[32 * s + i] = strata_iq4_values[q[i] & 15]; c[32 * s + i + 16] = strata_iq4_values[q[i] >> 4]; }
        }
    }
}

#if STRATA_X86
__attribute__((target("avx2,fma,f16c"))) void strata_unpack_iq4_xs_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    const __m256i values = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)strata_iq4_values));
    const __m256i lo4 = _mm256_set1_epi8(15);
    for (long b = 0; b < nb; b++, w += 136, c += 256, d += 8, m += 8) {
        const float bd = f16c_at(w);
        for (int s = 0; s < 8; s++) {
            d[s] = bd * (float)iq4xs_scale(w, s);
            m[s] = 0;
            const __m128i q = _mm_loadu_si128((const __m128i *)(w + 8 + 16 * s));
            const __m256i idx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), lo4);
            _mm256_storeu_si256((__m256i *)(c + 32 * s), _mm256_shuffle_epi8(values, idx));
        }
    }
}
#endif
