// Q5_K (ggml's block_q5_K): 256 weights in 176 bytes, f16 d, f16 dmin, u8 scales[12] (eight 6-bit
// scales sc and mins mn packed as Q4_K's), u8 qh[32], u8 qs[128]. Sub-block s of 32 (s < 8): low
// four bits from qs[32 * (s / 2) + l] (low nibble for even s, high for odd), the fifth from bit s
// of qh[l]; w = (d * sc_s) * q - dmin * mn_s.
#include "strata_kernels.h"
#include "common.h"

void strata_dequant_q5_k(const uint8_t *b, float *y) {
    const float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int s = 0; s < 8; s++) {
        int sc, mn;
        k4_scale_min(s, b + 4, &sc, &mn);
        const float ds = d * (float)sc, ms = dmin * (float)mn;
        const uint8_t *q = qs + 32 * (s / 2);
        for (int l = 0; l < 32; l++) {
            const int code = (s % 2 == 0 ? (q[l] & 15) : (q[l] >> 4)) | (((qh[l] >> s) & 1) << 4);
            y[32 * s + l] = ds * (float)code - ms;
        }
    }
}

void strata_unpack_q5_k(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    for (long b = 0; b < nb; b++, w += 176, c += 256, d += 8, m += 8) {
        const float bd = f16_at(w), bmin = f16_at(w + 2);
        const uint8_t *qh = w + 16, *qs = w + 48;
        for (int s = 0; s < 8; s++) {
            int sc, mn;
            k4_scale_min(s, w + 4, &sc, &mn);
            d[s] = bd * (float)sc;
            m[s] = -(bmin * (float)mn);
            const uint8_t *q = qs + 32 * (s / 2);
            for (int l = 0; l < 32; l++)
                c[32 * s + l] = (int8_t)((s % 2 == 0 ? (q[l] & 15) : (q[l] >> 4)) | (((qh[l] >> s) & 1) << 4));
        }
    }
}

#if STRATA_X86
__attribute__((target("avx2,fma,f16c"))) void strata_unpack_q5_k_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    const __m256i lo4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    for (long b = 0; b < nb; b++, w += 176, c += 256, d += 8, m += 8) {
        uint32_t u[4];
        k4_unpack_scales(w + 4, u);  // bytes 0-7 the scales, 8-15 the mins
        const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)u)));
        const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(u + 2))));
        _mm256_storeu_ps(d, _mm256_mul_ps(_mm256_set1_ps(f16c_at(w)), sc));
        // -(dmin * mn): the product rounded, then negated (exact), as the portable code
        _mm256_storeu_ps(m, _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(f16c_at(w + 2)), mn), _mm256_set1_ps(-0.0f)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 16));
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w + 48 + 32 * j));
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one);
            _mm256_storeu_si256((__m256i *)(c + 64 * j), _mm256_or_si256(_mm256_and_si256(q, lo4), _mm256_slli_epi16(h0, 4)));
            _mm256_storeu_si256((__m256i *)(c + 64 * j + 32),
                                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), lo4), _mm256_slli_epi16(h1, 4)));
        }
    }
}
#endif
