/**
 * `llama-napi bench`: prompt processing (ppN: one batched evaluation of N tokens) and text generation (tgN:
 * N greedy tokens, one decode step each) in tokens per second, median of several runs, like llama-bench.
 */
import { performance } from "node:perf_hooks";
import { loadModel } from "../model";
import { cpuFeatures } from "../native/engine";
import { type CommandSpec, parseCommand, UsageError, MODEL_OPTION, TOKENIZER_OPTION } from "./args";

export const benchCommand: CommandSpec = {
  name: "bench",
  summary: "Measure prefill (pp) and decode (tg) speed in tokens per second.",
  usage: "llama-napi bench --model PATH [--threads 1,2] [--pp 128] [--tg 128] [--repetitions 3] [--json]",
  options: {
    model: MODEL_OPTION,
    tokenizer: TOKENIZER_OPTION,
    threads: { type: "string", short: "t", placeholder: "LIST", description: "Comma-separated thread counts (default: physical cores)" },
    pp: { type: "string", number: "int", placeholder: "N", description: "Prompt tokens per prefill run (default 128; 0 skips)" },
    tg: { type: "string", number: "int", placeholder: "N", description: "Generated tokens per decode run (default 128; 0 skips)" },
    repetitions: { type: "string", number: "int", short: "r", placeholder: "N", description: "Runs per figure; the median is printed (default 3)" },
    json: { type: "boolean", description: "Print one JSON object per row instead of a table" },
  },
};

export interface BenchRow {
  model: string;
  weightType: string;
  threads: number;
  test: string;
  tokensPerSecond: number;
  runs: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function parseThreadList(raw: string | undefined): (number | undefined)[] {
  if (raw === undefined) return [undefined];
  return raw.split(",").map((t) => {
    const n = Number(t);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--threads takes positive integers separated by commas (got "${raw}")`);
    return n;
  });
}

export async function benchModel(
  modelPath: string,
  opts: { threads?: number; pp: number; tg: number; repetitions: number; tokenizer?: string },
): Promise<BenchRow[]> {
  const model = await loadModel(modelPath, {
    threads: opts.threads,
    tokenizer: opts.tokenizer,
    contextSize: Math.max(opts.pp, opts.tg + 1, 16),
  });
  try {
    const { vocabSize, weightType, threads } = model.info;
    const rows: BenchRow[] = [];
    const row = (test: string, runs: number[]) =>
      rows.push({ model: modelPath, weightType, threads, test, tokensPerSecond: median(runs), runs });
    if (opts.pp > 0) {
      // Deterministic pseudo-random prompt ids (the content does not change the work done).
      const ids = Array.from({ length: opts.pp }, (_, i) => (i * 7919 + 13) % vocabSize);
      await model.evaluate(ids.slice(0, 8)); // warm-up: touch the weights once
      const runs: number[] = [];
      for (let r = 0; r < opts.repetitions; r++) {
        const t0 = performance.now();
        await model.evaluate(ids);
        runs.push(opts.pp / ((performance.now() - t0) / 1000));
      }
      row(`pp${opts.pp}`, runs);
    }
    if (opts.tg > 0) {
      const bos = model.info.bosId ?? 1;
      const runs: number[] = [];
      await model.complete({ tokens: [bos] }, { temperature: 0, maxTokens: 4, ignoreEos: true }); // warm-up
      for (let r = 0; r < opts.repetitions; r++) {
        const { stats } = await model.complete({ tokens: [bos] }, { temperature: 0, maxTokens: opts.tg + 1, ignoreEos: true });
        runs.push(stats.decodeTps);
      }
      row(`tg${opts.tg}`, runs);
    }
    return rows;
  } finally {
    await model.dispose();
  }
}

export async function bench(argv: string[]): Promise<number> {
  const o = parseCommand(benchCommand, argv);
  if (typeof o.model !== "string") throw new UsageError("--model is required (see llama-napi bench --help)");
  const settings = {
    pp: (o.pp as number | undefined) ?? 128,
    tg: (o.tg as number | undefined) ?? 128,
    repetitions: (o.repetitions as number | undefined) ?? 3,
    tokenizer: o.tokenizer as string | undefined,
  };
  if (!o.json) {
    process.stdout.write(`cpu kernels: ${cpuFeatures()}\n`);
    process.stdout.write(`| model | type | threads | test | tok/s (median) | runs |\n|---|---|---|---|---|---|\n`);
  }
  for (const threads of parseThreadList(o.threads as string | undefined)) {
    for (const r of await benchModel(o.model, { ...settings, threads })) {
      process.stdout.write(
        o.json
          ? `${JSON.stringify(r)}\n`
          : `| ${r.model} | ${r.weightType} | ${r.threads} | ${r.test} | ${r.tokensPerSecond.toFixed(2)} | ${r.runs.map((x) => x.toFixed(1)).join(", ")} |\n`,
      );
    }
  }
  return 0;
}
