/* ref_quant.h - naive oracles for tests: ggml block formats decoded
 * element by element straight from the format definition, written for
 * clarity, not speed. Linked into every test program (ref_ prefix).
 */
#ifndef KVT_REF_QUANT_H
#define KVT_REF_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* IEEE half <-> float by arithmetic (ldexp), no bit tricks. */
float ref_f16_to_f32(uint16_t h);
/* Nearest half to F (ties to even) by binary search over the ordered
 * finite halves; NaN -> 0x7E00 with F's sign, overflow -> infinity. */
uint16_t ref_f32_to_f16(float f);
float ref_bf16_to_f32(uint16_t h);
/* Nearest bf16 (ties to even) chosen by comparing distances in double. */
uint16_t ref_f32_to_bf16(float f);

/* Elements per block and bytes per block of a ggml TYPE (0 if unknown). */
int ref_block_elems(int type);
int ref_block_bytes(int type);

/* Dequantize N elements (a multiple of the block size) of TYPE from the
 * raw bytes SRC into DST. Returns 0, or -1 for an unsupported type. */
int ref_dequant(int type, const void *src, float *dst, int64_t n);

/* Fill N_BLOCKS blocks of TYPE at DST with random bytes, then overwrite
 * every fp16/bf16 scale (or fp16/bf16 element) with a finite value of
 * magnitude about SCALE. *SEED is an xorshift state. */
void ref_random_blocks(int type, void *dst, int64_t n_blocks, float scale,
                       uint64_t *seed);

/* Quantize N floats (a multiple of 32) as ggml's q8_0 activations and
 * kvtile's int8 GEMM do, in f32: per block of 32, amax = max |x|,
 * d = amax / 127, q = x * (127 / amax) rounded to nearest, ties to even
 * (q = 0 when amax = 0). Q gets N codes, D and AMAX n / 32 values each. */
void ref_quant_x8(const float *x, int64_t n, int8_t *q, float *d, float *amax);

/* Quantize N floats (a multiple of 32) to IQ4_NL blocks at DST (18 bytes
 * per 32): per block, the scale d (rounded to f16) is the best of a
 * small search around max|x| / 127 and max|x| / 113 (either sign), each
 * element taking its nearest level d * K[q]; best = least squared error.
 * Deterministic (f32 arithmetic): the same floats give the same bytes. */
void ref_quantize_iq4_nl(const float *x, int64_t n, void *dst);

uint64_t ref_rand_u64(uint64_t *seed);
float ref_rand_f32(uint64_t *seed); /* uniform in [-1, 1) */

#endif
