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
#define FLOAT_TYPE(n, b) {.name = n, .elements = 1, .bytes = b, .specialized = 1, .x_block = 1}
    [STRATA_W_F32] = FLOAT_TYPE("f32", 4),
    [STRATA_W_F16] = FLOAT_TYPE("f16", 2),
    [STRATA_W_BF16] = FLOAT_TYPE("bf16", 2),
    // kernels of their own (quant.c, quant_q8.c)
    [STRATA_W_Q8_0] = {.name = "q8_0", .elements = 32, .bytes = 34, .dequant = strata_dequant_q8_0, .specialized = 1, .x_block = 32},
    [STRATA_W_Q4_0] = {.name = "q4_0", .elements = 32, .bytes = 18, .dequant = strata_dequant_q4_0, .specialized = 1, .x_block = 32},
    [STRATA_W_Q4_K] = {.name = "q4_k", .elements = 256, .bytes = 144, .dequant = strata_dequant_q4_k, .has_offset = 1, .specialized = 1, .x_block = 256},
    [STRATA_W_Q6_K] = {.name = "q6_k", .elements = 256, .bytes = 210, .dequant = strata_dequant_q6_k, .specialized = 1, .x_block = 256},
    // the generic kernels (quant_generic.c) through each type's unpack
    [STRATA_W_Q4_1] = {.name = "q4_1", .elements = 32, .bytes = 20, .dequant = strata_dequant_q4_1, .unpack = strata_unpack_q4_1,
                       .unpack_avx2 = AVX2_OR_NULL(strata_unpack_q4_1_avx2), .has_offset = 1, .unsigned_codes = 1, .x_block = 32},
    [STRATA_W_Q5_0] = {.name = "q5_0", .elements = 32, .bytes = 22, .dequant = strata_dequant_q5_0, .unpack = strata_unpack_q5_0,
                       .unpack_avx2 = AVX2_OR_NULL(strata_unpack_q5_0_avx2), .has_offset = 1, .unsigned_codes = 1, .x_block = 32},
    [STRATA_W_Q5_K] = {.name = "q5_k", .elements = 256, .bytes = 176, .dequant = strata_dequant_q5_k, .unpack = strata_unpack_q5_k,
                       .unpack_avx2 = AVX2_OR_NULL(strata_unpack_q5_k_avx2), .has_offset = 1, .unsigned_codes = 1, .x_block = 32},
    [STRATA_W_IQ4_NL] = {.name = "iq4_nl", .elements = 32, .bytes = 18, .dequant = strata_dequant_iq4_nl, .unpack = strata_unpack_iq4_nl,
                         .unpack_avx2 = AVX2_OR_NULL(strata_unpack_iq4_nl_avx2), .lut = strata_iq4_values, .lut_skip = 2,
                         .lut_scale = STRATA_LUT_F16, .x_block = 32},
    [STRATA_W_IQ4_XS] = {.name = "iq4_xs", .elements = 256, .bytes = 136, .dequant = strata_dequant_iq4_xs, .unpack = strata_unpack_iq4_xs,
                         .unpack_avx2 = AVX2_OR_NULL(strata_unpack_iq4_xs_avx2), .x_block = 32},
    [STRATA_W_MXFP4] = {.name = "mxfp4", .elements = 32, .bytes = 17, .dequant = strata_dequant_mxfp4, .unpack = strata_unpack_mxfp4,
                        .unpack_avx2 = AVX2_OR_NULL(strata_unpack_mxfp4_avx2), .lut = strata_mxfp4_values, .lut_skip = 1,
                        .lut_scale = STRATA_LUT_E8M0, .x_block = 32},
#undef FLOAT_TYPE
};
// the last type without a row fails here; a row left out before it is zeros, which
// QuantKernelTests finds (every type's block size is asked)
_Static_assert(sizeof strata_qtypes / sizeof strata_qtypes[0] == STRATA_W_COUNT, "one traits row per weight type");

long strata_qblock_elements(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT ? strata_qtypes[wtype].elements : 0; }
long strata_qblock_bytes(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT ? strata_qtypes[wtype].bytes : 0; }
long strata_qtype_x_block(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT ? strata_qtypes[wtype].x_block : 0; }
int strata_qtype_specialized(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT && strata_qtypes[wtype].specialized; }
const char *strata_qtype_name(int wtype) { return wtype >= 0 && wtype < STRATA_W_COUNT ? strata_qtypes[wtype].name : NULL; }
