#!/usr/bin/env bash
# Cross-compiles the engine, its kernel tests and the N-API addon for linux-arm64 (aarch64-linux-gnu-gcc, the
# toolchain file cmake/aarch64-linux-gnu.cmake) into build-arm64/, stores the stripped addon as
# prebuilds/linux-arm64/llama-napi.napi.glibc.node (where node-gyp-build, and so lib/native/binding.ts, finds it on
# arm64), and runs the kernel tests under qemu-aarch64 on emulated CPUs:
#   -cpu max                                  dotprod and i8mm present: every matmul check compares the neon,
#                                             neon-dotprod and neon-i8mm sets with scalar; attention and
#                                             batch == steps run on neon-i8mm;
#   -cpu max, LLAMA_NAPI_KERNELS=neon-dotprod batch == steps on the dotprod set;
#   -cpu cortex-a53                           no dotprod: the detection itself must fall back to plain NEON.
# With --e2e it then runs greedy generations through the arm64 addon under Debian's arm64 node (fetched with
# apt-get download into build-arm64/node-root unless ARM64_NODE_ROOT names a root holding usr/bin/node): stories260K
# in f32, and as F16, Q8_0 and Q4_0 files quantized here, on each arm64 kernel set, each text equal to the x86
# build's (build/, which must exist: npm run build / cmake-js, and npm run build:ts).
# With --no-tests it only builds (scripts/prebuild.js). Needs: apt-get install cmake gcc-aarch64-linux-gnu
# g++-aarch64-linux-gnu, and qemu-user for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in "" | --e2e | --no-tests) ;; *) echo "usage: $0 [--e2e | --no-tests]" >&2; exit 2 ;; esac

build=build-arm64
cmake -S . -B "$build" --no-warn-unused-cli -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_NAPI_CUDA=0 -DLLAMA_NAPI_BUILD_TESTS=1 -DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION \
  "-DCMAKE_JS_INC=$PWD/node_modules/node-api-headers/include" >/dev/null
cmake --build "$build" --target kernel_tests llama_napi -j "${JOBS:-2}"

prebuild=prebuilds/linux-arm64/llama-napi.napi.glibc.node
mkdir -p "$(dirname "$prebuild")"
aarch64-linux-gnu-strip --strip-unneeded -o "$prebuild" "$build/llama_napi.node"
echo "linux-arm64 addon: $prebuild ($(stat -c %s "$prebuild") bytes)"
[ "$mode" = --no-tests ] && exit 0

# qemu-aarch64 CPU:KERNELS PROGRAM ARGS...: runs an aarch64 program on an emulated CPU, LLAMA_NAPI_KERNELS set to
# KERNELS (unset for "best": the dispatch's own choice).
emulate() {
  local cpu=${1%%:*} kernels=${1#*:}
  shift
  if [ "$kernels" = best ]; then env -u LLAMA_NAPI_KERNELS qemu-aarch64 -cpu "$cpu" "$@"
  else LLAMA_NAPI_KERNELS=$kernels qemu-aarch64 -cpu "$cpu" "$@"
  fi
}

export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
for run in max:best max:neon-dotprod cortex-a53:best; do
  log="$build/kernel_tests-${run/:/-}.log"
  echo "== kernel_tests under qemu-aarch64 -cpu ${run%%:*}, kernels: ${run#*:}"
  if ! emulate "$run" "$build/kernel_tests" >"$log"; then
    grep FAIL "$log" | head -40
    tail -3 "$log"
    exit 1
  fi
  head -1 "$log"
  tail -1 "$log"
done
expect_set() { # LOG SET: the first line names the set the dispatch chose
  grep -q "^kernel set: $2 " "$1" || { echo "expected the $2 set: $(head -1 "$1")" >&2; exit 1; }
}
expect_set "$build/kernel_tests-max-best.log" neon-i8mm
expect_set "$build/kernel_tests-max-neon-dotprod.log" neon-dotprod
expect_set "$build/kernel_tests-cortex-a53-best.log" neon

[ "$mode" = --e2e ] || exit 0

node_root=${ARM64_NODE_ROOT:-$PWD/$build/node-root}
if [ ! -x "$node_root/usr/bin/node" ]; then
  echo "== fetching Debian's arm64 node into $node_root"
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  debs=$(mktemp -d)
  (cd "$debs" && apt-get download -qq nodejs:arm64 libnode108:arm64 libuv1:arm64 libbrotli1:arm64 libc-ares2:arm64 \
    libicu72:arm64 libnghttp2-14:arm64 libssl3:arm64 zlib1g:arm64 node-acorn node-cjs-module-lexer node-undici)
  mkdir -p "$node_root/lib"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$node_root"; done
  rm -rf "$debs"
  # glibc, libstdc++ and the loader come from the cross toolchain's libc6-arm64-cross.
  cp -a /usr/aarch64-linux-gnu/lib/. "$node_root/usr/lib/aarch64-linux-gnu/"
  cp /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 "$node_root/lib/"
fi

# An installed package's layout (no build/, which node-gyp-build would prefer): the compiled JS, the arm64 prebuild.
package="$build/package"
rm -rf "$package"
mkdir -p "$package/scripts" "$package/prebuilds/linux-arm64"
cp -r dist package.json "$package/"
cp scripts/greedy-check.js "$package/scripts/"
cp "$prebuild" "$package/prebuilds/linux-arm64/"
ln -s "$PWD/node_modules" "$package/node_modules"
models=("$PWD/models/stories260K.gguf")
mkdir -p "$build/models"
for type in F16 Q8_0 Q4_0; do
  node dist/cjs/cli/main.js quantize models/stories260K.gguf "$build/models/stories260K-$type.gguf" --type "$type" -t 1 \
    >"$build/quantize.log" 2>&1 || { cat "$build/quantize.log"; exit 1; } # (notices: tensors kept wider)
  models+=("$PWD/$build/models/stories260K-$type.gguf")
done

text_of() { node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); process.stdout.write(JSON.stringify(r.text))'; }
failed=0
for model in "${models[@]}"; do
  expected=$(env -u LLAMA_NAPI_KERNELS node scripts/greedy-check.js "$model" | text_of)
  for run in max:best max:neon-dotprod max:scalar cortex-a53:best; do
    line=$(QEMU_LD_PREFIX="$node_root" emulate "$run" "$node_root/usr/bin/node" "$package/scripts/greedy-check.js" "$model")
    kernels=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).kernels + " " + JSON.parse(process.argv[1]).binary)' "$line")
    if [ "$(echo "$line" | text_of)" = "$expected" ] && [[ "$kernels" == *" prebuilds/linux-arm64/"* ]]; then
      echo "ok   greedy $(basename "$model") on arm64 -cpu ${run%%:*} ($kernels): same text as x86"
    else
      echo "FAIL greedy $(basename "$model") on arm64 -cpu ${run%%:*} ($kernels): $line, x86: $expected"
      failed=1
    fi
  done
done
exit $failed
