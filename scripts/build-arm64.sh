#!/usr/bin/env bash
# Cross-compiles the engine, its kernel tests and the N-API addon for linux-arm64 (aarch64-linux-gnu-gcc, the
# toolchain file cmake/aarch64-linux-gnu.cmake) into build-arm64/, runs the kernel tests under qemu-aarch64 on
# three emulated CPUs, and stores the stripped addon as prebuilds/linux-arm64/llama-napi.napi.glibc.node, where
# node-gyp-build (lib/native/binding.ts) finds it on arm64:
#   -cpu max          dotprod present: every matmul check compares the neon and neon_dotprod sets with scalar,
#                     the rest (attention, batch == steps) run on neon_dotprod;
#   -cpu max, LLAMA_NAPI_KERNELS=neon   attention and batch == steps on the plain NEON set;
#   -cpu cortex-a53   no dotprod: the detection falls back to plain NEON by itself.
# Needs: apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user (and cmake). --no-tests skips qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
run_tests=1
[ "${1:-}" = "--no-tests" ] && run_tests=0

build=build-arm64
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_NAPI_CUDA=0 -DLLAMA_NAPI_BUILD_TESTS=1 -DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION \
  "-DCMAKE_JS_INC=$PWD/node_modules/node-api-headers/include" >/dev/null
cmake --build "$build" --target kernel_tests llama_napi -j "${JOBS:-2}"

prebuild=prebuilds/linux-arm64/llama-napi.napi.glibc.node
mkdir -p "$(dirname "$prebuild")"
aarch64-linux-gnu-strip --strip-unneeded -o "$prebuild" "$build/llama_napi.node"
echo "linux-arm64 addon: $prebuild ($(stat -c %s "$prebuild") bytes)"

if [ "$run_tests" = 1 ]; then
  export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
  for cpu in max:best max:neon cortex-a53:best; do
    kernels=${cpu#*:}
    echo "== kernel_tests under qemu-aarch64 -cpu ${cpu%%:*}, kernels: $kernels"
    if [ "$kernels" = best ]; then env -u LLAMA_NAPI_KERNELS qemu-aarch64 -cpu "${cpu%%:*}" "$build/kernel_tests" >"$build/kernel_tests-${cpu%%:*}-$kernels.log" || { tail -50 "$build/kernel_tests-${cpu%%:*}-$kernels.log"; grep FAIL "$build/kernel_tests-${cpu%%:*}-$kernels.log" | head -40; exit 1; }
    else LLAMA_NAPI_KERNELS=$kernels qemu-aarch64 -cpu "${cpu%%:*}" "$build/kernel_tests" >"$build/kernel_tests-${cpu%%:*}-$kernels.log" || { grep FAIL "$build/kernel_tests-${cpu%%:*}-$kernels.log" | head -40; exit 1; }
    fi
    head -1 "$build/kernel_tests-${cpu%%:*}-$kernels.log"
    tail -1 "$build/kernel_tests-${cpu%%:*}-$kernels.log"
  done
fi
