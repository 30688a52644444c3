/**
 * RoPE inverse frequencies, computed once per model in float32 exactly as HF transformers does (theta^(-2i/d),
 * then Llama 3.1 "llama3" or linear scaling), so the engine only multiplies by the position.
 */
import type { ModelConfig } from "../formats/types";

export function ropeFrequencies(config: Pick<ModelConfig, "headDim" | "ropeTheta" | "ropeScaling" | "ropeFreqFactors">): Float32Array {
  const half = config.headDim / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    // HF: 1 / base ** (arange(0, d, 2).float() / d), all in float32.
    const exponent = Math.fround((2 * i) / config.headDim);
    freqs[i] = Math.fround(1 / Math.fround(Math.pow(config.ropeTheta, exponent)));
  }
  // GGUF's rope_freqs.weight: llama.cpp divides each frequency by its factor.
  const factors = config.ropeFreqFactors;
  if (factors) return freqs.map((f, i) => Math.fround(f / factors[i]));
  const scaling = config.ropeScaling;
  if (!scaling) return freqs;
  if (scaling.type === "linear") {
    for (let i = 0; i < half; i++) freqs[i] = Math.fround(freqs[i] / scaling.factor);
    return freqs;
  }
  // Llama 3.1: long wavelengths are slowed down by `factor`, short ones kept, the band between interpolated.
  const { factor, lowFreqFactor, highFreqFactor, originalContextLength } = scaling;
  const lowFreqWavelen = originalContextLength / lowFreqFactor;
  const highFreqWavelen = originalContextLength / highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / freqs[i];
    if (wavelen > lowFreqWavelen) {
      freqs[i] = Math.fround(freqs[i] / factor);
    } else if (wavelen >= highFreqWavelen) {
      const smooth = (originalContextLength / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      freqs[i] = Math.fround((1 - smooth) * (freqs[i] / factor) + smooth * freqs[i]);
    }
  }
  return freqs;
}

/**
 * The scaling as per-frequency divisors (unscaled / scaled frequency): llama.cpp's rope_freqs.weight, which GGUF
 * files carry instead of the Llama 3.1 rope_scaling parameters.
 */
export function ropeFreqFactors(config: Pick<ModelConfig, "headDim" | "ropeTheta" | "ropeScaling" | "ropeFreqFactors">): Float32Array {
  const unscaled = ropeFrequencies({ headDim: config.headDim, ropeTheta: config.ropeTheta });
  const scaled = ropeFrequencies(config);
  return unscaled.map((f, i) => f / scaled[i]);
}
