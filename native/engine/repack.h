#ifndef LLM_REPACK_H
#define LLM_REPACK_H

/* Weights repacked at load for the CPU's SIMD kernels (repack.c): the rows of a q4_0, q8_0, q4_K, q5_K or q6_K matrix
 * in groups of LLM_REPACK_ROWS, each block's values interleaved so that one 4-byte lane of a vector holds 4
 * consecutive values of one row (row r in lane r), as vpdpbusd (and maddubs) want them against a broadcast of 4
 * activations, with the group's block scales side by side. A q4_K group, per super-block (2368 bytes): 32 vectors of 64 bytes, vector
 * 8j + k lane r = row r's qs[32j + 4k .. 32j + 4k + 3] as stored (low nibbles: sub-block 2j, high: 2j + 1); the
 * 6-bit scales [sub-block][row] and mins [sub-block pair][row][2] as bytes; d [row] and dmin [row] as halves. A
 * q5_K super-block (2880 bytes) is q4_K's, then 8 vectors of qh, vector k lane r = row r's qh[4k .. 4k + 3].
 * A q6_K group, per super-block (3392 bytes): 32 vectors of ql, vector v lane r = row r's ql[4v .. 4v + 3]; 16 of qh,
 * vector v lane r = qh[4v .. 4v + 3]; the int8 scales [group pair][row][2]; d [row] as halves; padding to 64.
 * A q4_0 / q8_0 group of a matrix with `cols` columns and nb = cols / 32 blocks:
 *   nb x value vectors: q4_0: 4 vectors of 64 bytes, vector k lane r = row r's qs[4k..4k+3] as stored (low nibbles:
 *                         values 4k..4k+3, high nibbles: values 16+4k..16+4k+3);
 *                       q8_0: 8 vectors of 64 bytes, vector g lane r = row r's qs[4g..4g+3] + 128 (unsigned bytes);
 *   nb x 16 row scales (the blocks' IEEE halves, row r at r),
 * padded to 64 bytes. Rows past the matrix's last are zero (scale 0). The mapped file stays the reference: the
 * kernel sets without a repacked kernel (scalar) read it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#define LLM_REPACK_ROWS 16

/* Whether a type has a repacked layout. */
bool llm_repack_type(enum llm_type type);
/* Bytes of one group of a matrix with `cols` columns (a multiple of 64). */
size_t llm_repack_group_bytes(enum llm_type type, int64_t cols);
/* Bytes of a whole [rows, cols] matrix repacked. */
size_t llm_repacked_bytes(enum llm_type type, int64_t rows, int64_t cols);
/* Repacks rows [0, n_rows) (n_rows <= LLM_REPACK_ROWS, w_stride bytes apart) into one group. */
void llm_repack_group(enum llm_type type, int64_t cols, const void *w, size_t w_stride, int n_rows, void *group);

#endif
