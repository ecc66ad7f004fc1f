// IQ4_NL (ggml's block_iq4_nl): 32 weights in 18 bytes, f16 d, u8 qs[16]; a nibble indexes
// sixteen non-uniform values: w[i] = d * v[qs[i] & 15], w[i + 16] = d * v[qs[i] >> 4].
#include "strata_kernels.h"
#include "common.h"

const int8_t strata_iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void strata_dequant_iq4_nl(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    const uint8_t *q = b + 2;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)strata_iq4_values[q[i] & 15];
        y[i + 16] = d * (float)strata_iq4_values[q[i] >> 4];
    }
}

void strata_unpack_iq4_nl(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    for (long b = 0; b < nb; b++, w += 18, c += 32) {
        d[b] = f16_at(w);
        m[b] = 0;
        for (int i = 0; i < 16; i++) { c[i] = strata_iq4_values[w[2 + i] & 15]; c[i + 16] = strata_iq4_values[w[2 + i] >> 4]; }
    }
}

#if STRATA_X86
__attribute__((target("avx2,fma,f16c"))) void strata_unpack_iq4_nl_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    const __m256i values = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)strata_iq4_values));
    const __m256i lo4 = _mm256_set1_epi8(15);
    for (long b = 0; b < nb; b++, w += 18, c += 32) {
        d[b] = f16c_at(w);
        m[b] = 0;
        const __m128i q = _mm_loadu_si128((const __m128i *)(w + 2));
        const __m256i idx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), lo4);
        _mm256_storeu_si256((__m256i *)c, _mm256_shuffle_epi8(values, idx));
    }
}
#endif
