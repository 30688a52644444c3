#!/usr/bin/env node
// `npm run prebuild`: compiles the addon with cmake-js and stores it where node-gyp-build looks first, in the
// prebuildify layout: prebuilds/<platform>-<arch>/llama-napi.napi[.<libc>].node, debug symbols stripped.
// (prebuildify itself only drives node-gyp; this is a cmake-js project.) LLAMA_NAPI_CUDA applies as for a
// source build.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const root = path.resolve(__dirname, "..");

function run(cmd, args) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

run(process.execPath, [require.resolve("cmake-js/bin/cmake-js"), "compile"]);
const built = path.join(root, "build", "Release", "llama_napi.node");
const libc = process.platform === "linux" ? (fs.existsSync("/etc/alpine-release") ? ".musl" : ".glibc") : "";
const dir = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
const target = path.join(dir, `llama-napi.napi${libc}.node`);
fs.mkdirSync(dir, { recursive: true });
fs.copyFileSync(built, target);
if (process.platform === "linux") run("strip", ["--strip-unneeded", target]);
console.log(`llama-napi: prebuild written to ${path.relative(root, target)} (${fs.statSync(target).size} bytes)`);
