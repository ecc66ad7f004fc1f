// The traits table: one row per weight type (qtypes.h). Adding a quant type is one row here, one
// enum value in strata_kernels.h, and the type's file (its dequant and unpack; see q5_k.c).
#include "strata_kernels.h"
#include "common.h"

#if STRATA_X86
#define AVX2_OR_NULL(f) f
#else
#define AVX2_OR_NULL(f) NULL
#endif

const strata_qtype strata_qtypes[] = {
    // name, elements, bytes, dequant, unpack, unpack_avx2, has_offset, specialized, x_block
    [STRATA_W_F32] = {"f32", 1, 4, NULL, NULL, NULL, 0, 1, 1},
    [STRATA_W_F16] = {"f16", 1, 2, NULL, NULL, NULL, 0, 1, 1},
    [STRATA_W_BF16] = {"bf16", 1, 2, NULL, NULL, NULL, 0, 1, 1},
    [STRATA_W_Q8_0] = {"q8_0", 32, 34, strata_dequant_q8_0, NULL, NULL, 0, 1, 32},
    [STRATA_W_Q4_0] = {"q4_0", 32, 18, strata_dequant_q4_0, NULL, NULL, 0, 1, 32},
    [STRATA_W_Q4_K] = {"q4_k", 256, 144, strata_dequant_q4_k, NULL, NULL, 1, 1, 256},
    [STRATA_W_Q6_K] = {"q6_k", 256, 210, strata_dequant_q6_k, NULL, NULL, 0, 1, 256},
    [STRATA_W_Q4_1] = {"q4_1", 32, 20, strata_dequant_q4_1, strata_unpack_q4_1, AVX2_OR_NULL(strata_unpack_q4_1_avx2), 1, 0, 32},
    [STRATA_W_Q5_0] = {"q5_0", 32, 22, strata_dequant_q5_0, strata_unpack_q5_0, AVX2_OR_NULL(strata_unpack_q5_0_avx2), 0, 0, 32},
    [STRATA_W_Q5_K] = {"q5_k", 256, 176, strata_dequant_q5_k, strata_unpack_q5_k, AVX2_OR_NULL(strata_unpack_q5_k_avx2), 1, 0, 32},
    [STRATA_W_IQ4_NL] = {"iq4_nl", 32, 18, strata_dequant_iq4_nl, strata_unpack_iq4_nl, AVX2_OR_NULL(strata_unpack_iq4_nl_avx2), 0, 0, 32},
    [STRATA_W_IQ4_XS] = {"iq4_xs", 256, 136, strata_dequant_iq4_xs, strata_unpack_iq4_xs, AVX2_OR_NULL(strata_unpack_iq4_xs_avx2), 0, 0, 32},
};
// the last type without a row fails here; a row left out before it is zeros, which
// QuantKernelTests finds (every type's block size is asked)
_Static_assert(sizeof strata_qtypes / sizeof strata_qtypes[0] == STRATA_W_COUNT, "one traits row per weight type");

long strata_qblock_elements(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT ? strata_qtypes[wtype].elements : 0; }
long strata_qblock_bytes(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT ? strata_qtypes[wtype].bytes : 0; }
long strata_qtype_x_block(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT ? strata_qtypes[wtype].x_block : 0; }
int strata_qtype_specialized(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT && strata_qtypes[wtype].specialized; }
const char *strata_qtype_name(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT ? strata_qtypes[wtype].name : NULL; }
