#!/usr/bin/env node
// npm "install" hook: use a prebuilt binary from prebuilds/ when one loads on this machine,
// otherwise compile native/ with cmake-js (never node-gyp: this is a cmake-js project).
"use strict";
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const root = path.resolve(__dirname, "..");
const fromSource =
  process.env.npm_config_build_from_source === "true" || process.env.LLAMA_NAPI_BUILD_FROM_SOURCE === "1";

function prebuildLoads() {
  // A child process, so a binary that crashes on load cannot take this script down with it.
  const probe = `require("node-gyp-build").path(${JSON.stringify(root)}).includes("prebuilds") || process.exit(1);
                 require("node-gyp-build")(${JSON.stringify(root)});`;
  return spawnSync(process.execPath, ["-e", probe], { cwd: root, stdio: "ignore" }).status === 0;
}

if (!fromSource && prebuildLoads()) {
  console.log("llama-napi: using the prebuilt binary");
  process.exit(0);
}
const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
const result = spawnSync(process.execPath, [cmakeJs, "compile"], { cwd: root, stdio: "inherit" });
process.exit(result.status ?? 1);
