/**
 * llama.cpp's file types (enum llama_ftype, stored as GGUF's general.file_type): the name llama-quantize takes on
 * its command line, and the description llama.cpp prints when it loads a file (llama_ftype_name).
 */
export interface LlamaFileType {
  /** llama-quantize's name: "Q4_K_M". */
  name: string;
  /** llama.cpp's description: "Q4_K - Medium". */
  description: string;
}

export const LLAMA_FILE_TYPES: ReadonlyMap<number, LlamaFileType> = new Map<number, LlamaFileType>([
  [0, { name: "F32", description: "all F32" }],
  [1, { name: "F16", description: "F16" }],
  [2, { name: "Q4_0", description: "Q4_0" }],
  [3, { name: "Q4_1", description: "Q4_1" }],
  [7, { name: "Q8_0", description: "Q8_0" }],
  [8, { name: "Q5_0", description: "Q5_0" }],
  [9, { name: "Q5_1", description: "Q5_1" }],
  [10, { name: "Q2_K", description: "Q2_K - Medium" }],
  [11, { name: "Q3_K_S", description: "Q3_K - Small" }],
  [12, { name: "Q3_K_M", description: "Q3_K - Medium" }],
  [13, { name: "Q3_K_L", description: "Q3_K - Large" }],
  [14, { name: "Q4_K_S", description: "Q4_K - Small" }],
  [15, { name: "Q4_K_M", description: "Q4_K - Medium" }],
  [16, { name: "Q5_K_S", description: "Q5_K - Small" }],
  [17, { name: "Q5_K_M", description: "Q5_K - Medium" }],
  [18, { name: "Q6_K", description: "Q6_K" }],
  [19, { name: "IQ2_XXS", description: "IQ2_XXS - 2.0625 bpw" }],
  [20, { name: "IQ2_XS", description: "IQ2_XS - 2.3125 bpw" }],
  [21, { name: "Q2_K_S", description: "Q2_K - Small" }],
  [22, { name: "IQ3_XS", description: "IQ3_XS - 3.3 bpw" }],
  [23, { name: "IQ3_XXS", description: "IQ3_XXS - 3.0625 bpw" }],
  [24, { name: "IQ1_S", description: "IQ1_S - 1.5625 bpw" }],
  [25, { name: "IQ4_NL", description: "IQ4_NL - 4.5 bpw" }],
  [26, { name: "IQ3_S", description: "IQ3_S - 3.4375 bpw" }],
  [27, { name: "IQ3_M", description: "IQ3_S mix - 3.66 bpw" }],
  [28, { name: "IQ2_S", description: "IQ2_S - 2.5 bpw" }],
  [29, { name: "IQ2_M", description: "IQ2_M - 2.7 bpw" }],
  [30, { name: "IQ4_XS", description: "IQ4_XS - 4.25 bpw" }],
  [31, { name: "IQ1_M", description: "IQ1_M - 1.75 bpw" }],
  [32, { name: "BF16", description: "BF16" }],
  [36, { name: "TQ1_0", description: "TQ1_0 - 1.69 bpw ternary" }],
  [37, { name: "TQ2_0", description: "TQ2_0 - 2.06 bpw ternary" }],
  [38, { name: "MXFP4_MOE", description: "MXFP4 MoE" }],
  [39, { name: "NVFP4", description: "NVFP4" }],
  [40, { name: "Q1_0", description: "Q1_0" }],
  [41, { name: "Q2_0", description: "Q2_0" }],
]);

/** general.file_type of a file type named as llama-quantize names it. */
export function llamaFileTypeCode(name: string): number | undefined {
  for (const [code, t] of LLAMA_FILE_TYPES) if (t.name === name) return code;
  return undefined;
}
