#!/usr/bin/env node
"use strict";
// Writes test/fixtures/llama-quantize/<FILE_TYPE>.json: for each llama-quantize file type, every tensor's name,
// ggml type and the sha256 of its bytes, as llama.cpp's llama-quantize writes them (no importance matrix) from the
// f32 GGUF of trained/sotu-l2-23m. test/quantize-fixtures.test.js quantizes the same model with ours and compares.
//
// Usage: node scripts/llama-quantize-fixtures.js [F32.gguf]
//   F32.gguf   default: converted here with `llama-napi convert $LLAMA_NAPI_TEST_MODELS/trained/sotu-l2-23m --type f32`
//   env LLAMA_QUANTIZE   the binary (default: ~/.cache/llama-napi-peers/llamacpp/build/bin/llama-quantize, which
//                        ../shared/peers/build-llamacpp.sh builds)
// Needs `npm run build:ts` first (it reads GGUF files with dist/).
const { spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const ROOT = path.join(__dirname, "..");
const { readGguf } = require(path.join(ROOT, "dist/cjs/formats/gguf.js"));
const { GGML_TYPES } = require(path.join(ROOT, "dist/cjs/formats/ggml-types.js"));

/** The llama-quantize file types of the popular downloads (llama.cpp's names), in LLAMA_FTYPE order. */
const FILE_TYPES = ["Q4_0", "Q4_1", "Q8_0", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
  "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"];

const MODELS = path.resolve(process.env.LLAMA_NAPI_TEST_MODELS ?? path.join(ROOT, "..", "shared", "models"));
const PEERS = process.env.PEERS ?? path.join(os.homedir(), ".cache", "llama-napi-peers");
const QUANTIZE = process.env.LLAMA_QUANTIZE ?? path.join(PEERS, "llamacpp", "build", "bin", "llama-quantize");
const OUT = path.join(ROOT, "test", "fixtures", "llama-quantize");

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}):\n${r.stderr.slice(-2000)}`);
  return r;
}

function sha256(file, offset, length) {
  const buf = Buffer.alloc(length);
  const fd = fs.openSync(file, "r");
  try {
    fs.readSync(fd, buf, 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
  return crypto.createHash("sha256").update(buf).digest("hex");
}

/** llama.cpp's commit of the source the binary was built from, when the peer checkout is there. */
function llamaCppCommit() {
  const r = spawnSync("git", ["-C", path.join(PEERS, "llamacpp", "src"), "rev-parse", "--short", "HEAD"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "unknown";
}

function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llama-quantize-fixtures-"));
  try {
    let f32 = process.argv[2];
    if (!f32) {
      f32 = path.join(tmp, "sotu-l2-23m-f32.gguf");
      run(process.execPath, [path.join(ROOT, "dist/cjs/cli/main.js"), "convert", path.join(MODELS, "trained", "sotu-l2-23m"), f32, "--type", "f32"]);
    }
    fs.mkdirSync(OUT, { recursive: true });
    const commit = llamaCppCommit();
    for (const fileType of FILE_TYPES) {
      const out = path.join(tmp, `${fileType}.gguf`);
      run(QUANTIZE, [f32, out, fileType, String(os.availableParallelism?.() ?? os.cpus().length)]);
      const gguf = readGguf(out);
      const fixture = {
        made: `llama.cpp ${commit} llama-quantize (no imatrix) of the f32 GGUF of trained/sotu-l2-23m (llama-napi convert --type f32); scripts/llama-quantize-fixtures.js`,
        fileType: gguf.metadata.get("general.file_type"),
        tensors: gguf.tensors.map((t) => ({ name: t.name, type: GGML_TYPES.get(t.ggmlType).name, sha256: sha256(out, t.offset, t.byteLength) })),
      };
      // One tensor a line, so that a diff of two versions shows which tensors changed.
      const tensors = fixture.tensors.map((t) => `  ${JSON.stringify(t)}`).join(",\n");
      const head = JSON.stringify({ made: fixture.made, fileType: fixture.fileType }).slice(0, -1);
      fs.writeFileSync(path.join(OUT, `${fileType}.json`), `${head},\n "tensors": [\n${tensors}\n ]}\n`);
      fs.rmSync(out);
      console.log(`${fileType}: ${fixture.tensors.length} tensors, file type ${fixture.fileType}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main();
