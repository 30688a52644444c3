/**
 * HF checkpoints store q/k rows in rotate-half order (pairs i, i + headDim/2); GGUF expects Meta's interleaved pairs
 * (2i, 2i+1). This undoes HF's permute, as llama.cpp's convert_hf_to_gguf does: within each head, HF row j goes to
 * row 2j when j < headDim/2, else to 2(j - headDim/2) + 1.
 */

/** Reorders whole heads of `cols`-long rows (rows must be a multiple of headDim) from HF to GGUF order. */
export function interleaveRotaryRows(values: Float32Array, rows: number, cols: number, headDim: number): Float32Array {
  const out = new Float32Array(values.length);
  const half = headDim / 2;
  for (let head = 0; head < rows; head += headDim) {
    for (let j = 0; j < headDim; j++) {
      const to = head + (j < half ? 2 * j : 2 * (j - half) + 1);
      out.set(values.subarray((head + j) * cols, (head + j + 1) * cols), to * cols);
    }
  }
  return out;
}
