#!/usr/bin/env node
// `npm run prebuild`: compiles the addon with cmake-js and stores it in the prebuildify layout, debug symbols
// stripped. (prebuildify itself only drives node-gyp; this is a cmake-js project.) Two binaries:
//   prebuilds/<platform>-<arch>/llama-napi.napi[.<libc>].node       the CPU addon (LLAMA_NAPI_CUDA=0), which
//                                                                  node-gyp-build finds and npm install uses;
//   prebuilds/<platform>-<arch>/cuda/llama-napi.napi[.<libc>].node  the addon with the CUDA backend, built when nvcc
//                                                                  is found, in a folder node-gyp-build does not
//                                                                  read: lib/native/binding.ts loads it at run time
//                                                                  when a GPU is present and it passes a check.
// LLAMA_NAPI_CUDA=0 builds the CPU binary alone (and removes a CUDA binary left by an earlier run, which would no
// longer match it); LLAMA_NAPI_CUDA=1 fails when nvcc is missing. Each binary has its own build folder under
// build-prebuild/, so neither disturbs build/ (the source build, both backends in one binary).
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

/** Whether CMake will find a CUDA compiler: where CMake's check_language(CUDA) looks first. */
function nvccFound() {
  const candidates = [process.env.CUDACXX, "nvcc", "/usr/local/cuda/bin/nvcc"].filter(Boolean);
  return candidates.some((nvcc) => spawnSync(nvcc, ["--version"], { stdio: "ignore" }).status === 0);
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

const wanted = process.env.LLAMA_NAPI_CUDA;
const cudaTarget = path.join(dir, "cuda", name);
build("cpu", "0", path.join(dir, name));
if (wanted === "1" || (wanted !== "0" && nvccFound())) {
  build("cuda", "1", cudaTarget);
} else {
  fs.rmSync(path.dirname(cudaTarget), { recursive: true, force: true });
  console.log(`llama-napi: no CUDA prebuild (${wanted === "0" ? "LLAMA_NAPI_CUDA=0" : "nvcc not found"})`);
}
