#!/usr/bin/env node
// `npm run build:prebuilds`, and `prepack` (so `npm pack` and `npm publish` carry a binary that installs without a
// compiler): compiles the addon with cmake-js and stores it in the prebuildify layout, debug symbols stripped.
// (prebuildify itself only drives node-gyp; this is a cmake-js project.) Two binaries, and on linux-x64 a third
// (prebuilds/linux-arm64/, cross-compiled by scripts/build-arm64.sh where the aarch64 toolchain is installed):
//   prebuilds/<platform>-<arch>/llama-napi.napi[.<libc>].node       the CPU addon (LLAMA_NAPI_CUDA=0), always built;
//                                                                  node-gyp-build finds it and npm install uses it;
//   prebuilds/<platform>-<arch>/cuda/llama-napi.napi[.<libc>].node  the addon with the CUDA backend, built only with
//                                                                  LLAMA_NAPI_CUDA=1 (it takes minutes), in a folder
//                                                                  node-gyp-build does not read: lib/native/binding.ts
//                                                                  loads it at run time when a GPU is present and it
//                                                                  passes a check.
// Without LLAMA_NAPI_CUDA=1 a CUDA binary left by an earlier run is removed, since it would no longer match the CPU
// one. Each binary has its own build folder under build-prebuild/, so neither disturbs build/ (the source build).
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const root = path.resolve(__dirname, "..");
const libc = process.platform === "linux" ? (fs.existsSync("/etc/alpine-release") ? ".musl" : ".glibc") : "";
const name = `llama-napi.napi${libc}.node`;
const dir = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);

function run(cmd, args) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

/** Builds the addon with LLAMA_NAPI_CUDA=cuda in build-prebuild/<variant> and copies it to target, stripped. */
function build(variant, cuda, target) {
  const out = path.join("build-prebuild", variant);
  run(process.execPath, [require.resolve("cmake-js/bin/cmake-js"), "compile", "--out", out, "--target", "llama_napi", `--CDLLAMA_NAPI_CUDA=${cuda}`]);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(path.join(root, out, "Release", "llama_napi.node"), target);
  if (process.platform === "linux") run("strip", ["--strip-unneeded", target]);
  console.log(`llama-napi: ${variant} prebuild written to ${path.relative(root, target)} (${fs.statSync(target).size} bytes)`);
}

const cudaTarget = path.join(dir, "cuda", name);
build("cpu", "0", path.join(dir, name));
// linux-arm64 (prebuilds/linux-arm64/), cross-compiled where Debian's aarch64 toolchain is installed, so that the
// package installs without a compiler on ARM servers too (scripts/build-arm64.sh; its tests run in CI).
if (process.platform === "linux" && process.arch === "x64") {
  if (spawnSync("aarch64-linux-gnu-g++", ["--version"], { stdio: "ignore" }).status === 0) {
    run("bash", [path.join("scripts", "build-arm64.sh"), "--no-tests"]);
  } else {
    console.log("llama-napi: no linux-arm64 prebuild (apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu builds one)");
  }
}
if (process.env.LLAMA_NAPI_CUDA === "1") {
  build("cuda", "1", cudaTarget);
} else {
  fs.rmSync(path.dirname(cudaTarget), { recursive: true, force: true });
  console.log("llama-napi: no CUDA prebuild (LLAMA_NAPI_CUDA=1 builds one)");
}
