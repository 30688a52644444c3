/**
 * `llama-napi bench`: prompt processing (ppN: one batched evaluation of N tokens) and text generation (tgN:
 * N greedy tokens, one decode step each) in tokens per second, median of several runs, like llama-bench. With
 * `--peer`, llama.cpp's llama-bench runs on the same file with the same settings, one run after each of ours, and
 * both medians are printed; with `--bandwidth`, the decode roofline (weight bytes read per token / memory
 * bandwidth) too.
 */
import { execFile } from "node:child_process";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import { parseModel } from "../formats/detect";
import { InvalidArgumentError } from "../errors";
import type { LoadModelOptions } from "../model";
import { cpuFeatures } from "../native/engine";
import { type CommandSpec, parseCommand, UsageError, MODEL_OPTION, THREADS_OPTION, TOKENIZER_OPTION, CUSTOM_OPS_OPTIONS, customOpsOptions } from "./args";
import { loadModelWithProgress, OFFLINE_OPTION, resolveModel } from "./model-download";

export const benchCommand: CommandSpec = {
  name: "bench",
  summary: "Measure prefill (pp) and decode (tg) speed in tokens per second.",
  usage: "llama-napi bench --model PATH [--threads 1,2] [--pp 128] [--tg 128] [--repetitions 3] [--json]",
  options: {
    model: MODEL_OPTION,
    offline: OFFLINE_OPTION,
    tokenizer: TOKENIZER_OPTION,
    threads: {
      type: "string", short: "t", placeholder: "LIST", description: "Comma-separated thread counts (default: physical cores)",
      check: (list) => parseNumberList("threads", list as string, true).forEach((threads) => THREADS_OPTION.check!(threads)),
    },
    pp: {
      type: "string", number: "int", placeholder: "N", description: "Prompt tokens per prefill run (default 128; 0 skips)",
      check: (pp) => checkCount("pp", pp as number, 0),
    },
    tg: {
      type: "string", number: "int", placeholder: "N", description: "Generated tokens per decode run (default 128; 0 skips)",
      check: (tg) => checkCount("tg", tg as number, 0),
    },
    repetitions: {
      type: "string", number: "int", short: "r", placeholder: "N", description: "Runs per figure; the median is printed (default 3)",
      check: (repetitions) => checkCount("repetitions", repetitions as number, 1),
    },
    json: { type: "boolean", description: "Print one JSON object per row instead of a table" },
    peer: { type: "string", placeholder: "PATH", description: "llama.cpp's llama-bench binary: run it on the same file and settings, alternating with ours" },
    bandwidth: { type: "string", placeholder: "LIST", description: "Memory read bandwidth in GB/s per thread count (as --threads) for the decode roofline" },
    ...CUSTOM_OPS_OPTIONS,
  },
};

export interface BenchRow {
  model: string;
  weightType: string;
  threads: number;
  test: string;
  tokensPerSecond: number;
  runs: number[];
  /** llama-bench's median on the same file and settings, and its runs (with --peer). */
  peerTokensPerSecond?: number;
  peerRuns?: number[];
  /** Decode roofline: bandwidth / weight bytes read per token (tg rows, with --bandwidth). */
  rooflineTokensPerSecond?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min} (got ${value})`);
}

function parseNumberList(name: string, raw: string, integers: boolean): number[] {
  return raw.split(",").map((t) => {
    const n = Number(t);
    if (t.trim() === "" || !(n > 0) || (integers && !Number.isInteger(n))) {
      throw new UsageError(`--${name} takes positive ${integers ? "integers" : "numbers"} separated by commas (got "${raw}")`);
    }
    return n;
  });
}

/** One run of llama-bench (`-r 1`) for one thread count: { ppN, tgN } in tokens per second. */
async function peerRun(
  binary: string,
  modelPath: string,
  opts: { threads: number; pp: number; tg: number },
): Promise<Record<string, number>> {
  const args = ["-m", modelPath, "-t", String(opts.threads), "-p", String(opts.pp), "-n", String(opts.tg), "-r", "1", "-o", "json"];
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(binary, args, { maxBuffer: 64 << 20 }));
  } catch (err) {
    throw new UsageError(`--peer: ${binary} ${args.join(" ")} failed: ${(err as Error).message}`);
  }
  let results: { n_prompt: number; n_gen: number; avg_ts: number }[];
  try {
    results = JSON.parse(stdout);
    if (!Array.isArray(results)) throw new Error("not a JSON array");
  } catch (err) {
    throw new UsageError(`--peer: ${binary} did not print llama-bench's JSON (${(err as Error).message})`);
  }
  const out: Record<string, number> = {};
  for (const r of results) out[r.n_gen > 0 ? `tg${r.n_gen}` : `pp${r.n_prompt}`] = r.avg_ts;
  return out;
}

/** Weight bytes read per decoded token: every tensor but the embedding table, of which one row is read. */
async function decodeBytesPerToken(modelPath: string): Promise<number> {
  const desc = await parseModel(modelPath);
  const embedding = desc.tensors.find((t) => t.name === "token_embd.weight");
  const tied = !desc.tensors.some((t) => t.name === "output.weight");
  return desc.tensors.reduce((sum, t) => (t === embedding && !tied ? sum : sum + t.byteLength), 0);
}

/**
 * Our pp and tg runs on one loaded model, `repetitions` of each. `betweenRuns(threads)`, if given, runs after each
 * pp and tg pair: a peer's runs alternate with ours, so that a machine whose speed drifts over minutes moves both
 * figures alike.
 */
export async function benchModel(
  modelPath: string,
  opts: { threads?: number; pp: number; tg: number; repetitions: number; tokenizer?: string } & Pick<LoadModelOptions, "customOps" | "enableCustomOps">,
  betweenRuns?: (threads: number) => Promise<void>,
): Promise<BenchRow[]> {
  const model = await loadModelWithProgress(modelPath, {
    threads: opts.threads,
    tokenizer: opts.tokenizer,
    contextSize: Math.max(opts.pp, opts.tg + 1, 16),
    customOps: opts.customOps,
    enableCustomOps: opts.enableCustomOps,
  });
  try {
    const { vocabSize, weightType, threads } = model.info;
    const bos = model.info.bosId ?? 1;
    // Pseudo-random prompt ids (the content does not change the work done), different from the first token on in
    // every run: the model reuses a cached prefix, and a run must evaluate all of its tokens.
    const prompt = (run: number) => Array.from({ length: opts.pp }, (_, i) => (i * 7919 + 13 + run * 104729) % vocabSize);
    // Warm-up: touch the weights once.
    if (opts.pp > 0) await model.evaluate(prompt(opts.repetitions).slice(0, 8));
    if (opts.tg > 0) await model.complete({ tokens: [bos] }, { temperature: 0, maxTokens: 4, ignoreEos: true });
    const ppRuns: number[] = [];
    const tgRuns: number[] = [];
    for (let r = 0; r < opts.repetitions; r++) {
      if (opts.pp > 0) {
        const t0 = performance.now();
        await model.evaluate(prompt(r));
        ppRuns.push(opts.pp / ((performance.now() - t0) / 1000));
      }
      if (opts.tg > 0) {
        const { stats } = await model.complete({ tokens: [bos] }, { temperature: 0, maxTokens: opts.tg + 1, ignoreEos: true });
        tgRuns.push(stats.decodeTps);
      }
      await betweenRuns?.(threads);
    }
    const rows: BenchRow[] = [];
    const row = (test: string, runs: number[]) =>
      rows.push({ model: modelPath, weightType, threads, test, tokensPerSecond: median(runs), runs });
    if (opts.pp > 0) row(`pp${opts.pp}`, ppRuns);
    if (opts.tg > 0) row(`tg${opts.tg}`, tgRuns);
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
    ...customOpsOptions(o),
  };
  const threadList: (number | undefined)[] = o.threads === undefined ? [undefined] : parseNumberList("threads", o.threads as string, true);
  const bandwidths = o.bandwidth === undefined ? undefined : parseNumberList("bandwidth", o.bandwidth as string, false);
  if (bandwidths && bandwidths.length !== threadList.length) throw new UsageError("--bandwidth needs one figure per --threads entry");
  const peer = o.peer as string | undefined;
  // Resolved once: llama-bench (--peer) and the roofline read the local file.
  const modelPath = await resolveModel(o.model, o.offline as boolean | undefined);
  const bytesPerToken = bandwidths ? await decodeBytesPerToken(modelPath) : 0;
  if (!o.json) {
    process.stdout.write(`cpu kernels: ${cpuFeatures()}\n`);
    if (bandwidths) process.stdout.write(`decode reads ${(bytesPerToken / 1e6).toFixed(1)} MB of weights per token\n`);
    const extra = `${peer ? " llama.cpp | ours ÷ llama.cpp |" : ""}${bandwidths ? " roofline | of roofline |" : ""}`;
    process.stdout.write(`| model | type | threads | test | tok/s (median) | runs |${extra}\n`);
    process.stdout.write(`|---|---|---|---|---|---|${extra.replace(/[^|]+\|/g, "---|")}\n`);
  }
  for (const [i, threads] of threadList.entries()) {
    const peerRuns: Record<string, number[]> = {};
    const runPeer = async (modelThreads: number) => {
      for (const [test, tps] of Object.entries(await peerRun(peer!, modelPath, { ...settings, threads: modelThreads }))) {
        (peerRuns[test] ??= []).push(tps);
      }
    };
    const rows = await benchModel(modelPath, { ...settings, threads }, peer ? runPeer : undefined);
    for (const r of rows) {
      if (peer && peerRuns[r.test]) {
        r.peerTokensPerSecond = median(peerRuns[r.test]);
        r.peerRuns = peerRuns[r.test];
      }
      if (bandwidths && r.test.startsWith("tg")) r.rooflineTokensPerSecond = (bandwidths[i] * 1e9) / bytesPerToken;
      if (o.json) {
        process.stdout.write(`${JSON.stringify(r)}\n`);
        continue;
      }
      let line = `| ${r.model} | ${r.weightType} | ${r.threads} | ${r.test} | ${r.tokensPerSecond.toFixed(2)} | ${r.runs.map((x) => x.toFixed(1)).join(", ")} |`;
      if (peer) {
        const p = r.peerTokensPerSecond;
        line += p === undefined ? " - | - |" : ` ${p.toFixed(2)} | ${(r.tokensPerSecond / p).toFixed(2)}x |`;
      }
      if (bandwidths) {
        const roof = r.rooflineTokensPerSecond;
        line += roof === undefined ? " - | - |" : ` ${roof.toFixed(1)} | ${((100 * r.tokensPerSecond) / roof).toFixed(0)}% |`;
      }
      process.stdout.write(`${line}\n`);
    }
  }
  return 0;
}
