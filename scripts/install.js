#!/usr/bin/env node
// npm "install" hook: use a prebuilt binary from prebuilds/ when one loads on this machine,
// otherwise compile native/ with cmake-js (never node-gyp: this is a cmake-js project). When that build is needed
// but cmake or a compiler is missing, say so here, with the fix, rather than leave it to cmake-js's own message.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const root = path.resolve(__dirname, "..");
const platform = `${process.platform}-${process.arch}`;
const fromSource =
  process.env.npm_config_build_from_source === "true" || process.env.LLAMA_NAPI_BUILD_FROM_SOURCE === "1";

function prebuildLoads() {
  // A child process, so a binary that crashes on load cannot take this script down with it.
  const probe = `require("node-gyp-build").path(${JSON.stringify(root)}).includes("prebuilds") || process.exit(1);
                 require("node-gyp-build")(${JSON.stringify(root)});`;
  return spawnSync(process.execPath, ["-e", probe], { cwd: root, stdio: "ignore" }).status === 0;
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Whether a program is found as CMake would find it: an absolute path, or a name on PATH. */
function programFound(program) {
  if (path.isAbsolute(program)) return isExecutable(program);
  return (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir !== "" && isExecutable(path.join(dir, program)));
}

/** What a source build needs and this machine lacks (CC / CXX, when set, name the compilers CMake will use). */
function missingBuildTools() {
  const compiler = (envVar, names) => {
    const chosen = process.env[envVar]?.trim().split(/\s+/)[0];
    return chosen ? programFound(chosen) : names.some(programFound);
  };
  const missing = [];
  if (!programFound("cmake")) missing.push("cmake (3.18 or newer)");
  if (!compiler("CC", ["cc", "gcc", "clang"])) missing.push("a C compiler (cc, gcc or clang)");
  if (!compiler("CXX", ["c++", "g++", "clang++"])) missing.push("a C++ compiler (c++, g++ or clang++)");
  if (!["make", "ninja"].some(programFound)) missing.push("make (or ninja)");
  return missing;
}

if (!fromSource && prebuildLoads()) {
  console.log("llama-napi: using the prebuilt binary");
  process.exit(0);
}

// MSVC is found through the Visual Studio installation, not PATH: there cmake-js's own checks speak.
const missing = process.platform === "win32" ? [] : missingBuildTools();
if (missing.length > 0) {
  const why = fromSource
    ? "LLAMA_NAPI_BUILD_FROM_SOURCE=1 (or --build-from-source) asks for a build from source"
    : fs.existsSync(path.join(root, "prebuilds", platform))
      ? `the prebuilt binary for ${platform} does not load on this machine, so the addon must be built from source`
      : `this package has no prebuilt binary for ${platform}, so the addon must be built from source`;
  console.error(
    [
      `llama-napi: cannot install: ${why}, and that needs ${missing.join(", ")}, not found on PATH.`,
      "Fix: install the build tools and run npm install again:",
      "  Debian/Ubuntu: sudo apt-get install cmake g++ make",
      "  Fedora/RHEL:   sudo dnf install cmake gcc-c++ make",
      "  Alpine:        apk add cmake g++ make",
      "  macOS:         xcode-select --install; brew install cmake",
    ].join("\n"),
  );
  process.exit(1);
}

const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
const result = spawnSync(process.execPath, [cmakeJs, "compile"], { cwd: root, stdio: "inherit" });
if (result.status !== 0) console.error("llama-napi: the build from source failed (cmake-js's output is above).");
process.exit(result.status ?? 1);
