#!/bin/bash
# On the lent GPU machine, after bench/cuda/pack.sh here: unpacks .cudapack, runs the CUDA tests (the kernel tests
# and test/cuda.test.js on the packed models), then the benchmark table: a random-weight Llama-2-7B shape per weight
# type, written on the machine itself (GBs), tg128 and pp512 with the decode roofline. Logs and the table go to
# $OUT. Usage: bash bench/cuda/run.sh [--tests PATTERN|--no-tests] [--no-kernel-times] [--bench TYPES|--no-bench]
#   [--also VAR=VALUE] [--llamacpp] [--profile TYPES] [--concurrency STREAMS] [--depth N] [--server CLIENTS]
#   [--kv-capacity STREAMS:CTX:KVTYPE,...]
#   PATTERN: a test-name pattern (default: every test); TYPES: quantize's types and file types, e.g. "q4_0 f16
#   Q5_K_M" (default: q4_0 q8_0 f16 q4_K Q5_K_M IQ4_XS); kernel times: the products of a
#   7B layer at several token counts, CUDA-core path against tensor cores (cuda_kernel_tests --time); --also: each
#   type benchmarked a second time with that environment variable (e.g. LLAMA_NAPI_CUDA_PDL=0); --llamacpp:
#   llama.cpp's llama-bench on the same files (pp512, tg128, flash attention, all layers on the GPU), built here
#   from .cudapack/llamacpp-src.tar.xz (the source node-llama-cpp carries; bench/cuda/pack.sh --llamacpp) while
#   the tests run; --profile: ncu's time and DRAM bytes of every kernel of the whole decode steps among 900 kernels
#   launched mid-generation, for each of those types
#   (graphs off, so that ncu sees each launch; caches left warm between kernels, as in a real step), summed per
#   kernel by bench/cuda/profile.py; --concurrency: for each benchmarked type, aggregate tok/s of STREAMS (e.g.
#   "1,4,16,64") concurrent sequences (4-token prompts, 128 new tokens) through model.complete, greedy and sampled,
#   by bench/concurrency.js, and with --llamacpp llama-batched-bench beside it on the same file; --depth: tg128 after
#   N tokens of context as well (bench.js --depth; llama-bench -d N beside it); --server: CLIENTS streaming clients
#   against `llama-napi serve --parallel CLIENTS` for 30 s (bench/server-load.js: inter-token latency p50/p99);
#   --kv-capacity: for each spec, bench/kv-capacity.js fills a pool of STREAMS x CTX positions of KVTYPE
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=${OUT:-/tmp/cuda-out}
mkdir -p "$out"
tests=auto
kernel_times=1
types="q4_0 q8_0 f16 q4_K Q5_K_M IQ4_XS"
also=""
llamacpp=0
profile=""
concurrency=""
depth=0
server_clients=""
kv_capacity=""
while [ $# -gt 0 ]; do
  case "$1" in
    --also) also=$2; shift 2 ;;
    --llamacpp) llamacpp=1; shift ;;
    --profile) profile=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --depth) depth=$2; shift 2 ;;
    --server) server_clients=$2; shift 2 ;;
    --kv-capacity) kv_capacity=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    --no-tests) tests=none; shift ;;
    --no-kernel-times) kernel_times=0; shift ;;
    --bench) types=$2; shift 2 ;;
    --no-bench) types=""; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

source .device/env.sh
# cuBLAS (loaded at run time for prompt products) from the CUDA toolkit, where the loader does not know it.
if ! ldconfig -p | grep -q libcublas.so; then
  for dir in /usr/local/cuda/lib64 "$(dirname "$(command -v nvcc)")/../lib64"; do
    [ -e "$dir/libcublas.so" ] && export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" && break
  done
fi
export LLAMA_NAPI_EXPECT_CUBLAS=1
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/gpu.txt"
models=/tmp/llama-napi-models
mkdir -p "$models"
tar -xJf .cudapack/runtime.tar.xz
for pack in .cudapack/models-*.tar.xz; do [ -e "$pack" ] && tar -C "$models" -xJf "$pack"; done
for path_file in .cudapack/planes/*.path; do
  [ -e "$path_file" ] || continue
  key=${path_file%.path}
  python3 bench/cuda/planes.py join "$key" "$models/$(cat "$path_file")"
done
export LLAMA_NAPI_TEST_MODELS=$models
status=0

llamacpp_bin=/tmp/llamacpp/build/bin
if [ "$llamacpp" = 1 ]; then
  # In its own session, so that it builds on while the tests run (this call waits for it before llama-bench).
  mkdir -p /tmp/llamacpp/src
  tar -C /tmp/llamacpp/src -xJf .cudapack/llamacpp-src.tar.xz
  setsid bash -c 'cmake -S /tmp/llamacpp/src -B /tmp/llamacpp/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF \
      -DLLAMA_OPENSSL=OFF && nice cmake --build /tmp/llamacpp/build --target llama-bench llama-batched-bench -j 12; echo $? > /tmp/llamacpp/done' \
    > "$out/llamacpp-build.log" 2>&1 < /dev/null &
fi

if [ "$tests" != none ]; then
  # The trained reference models that were packed (the others are reported as not run).
  LLAMA_NAPI_CUDA_TRAINED=$(cd "$models" && ls trained/*/config.json trained/*/params.json 2>/dev/null | xargs -r -n1 dirname | xargs -r -n1 basename | paste -sd, -)
  export LLAMA_NAPI_CUDA_TRAINED
  pattern_args=()
  [ "$tests" != auto ] && pattern_args=(--test-name-pattern="$tests")
  echo "== node --test test/cuda.test.js ${pattern_args[*]} (trained models: ${LLAMA_NAPI_CUDA_TRAINED:-none})"
  node --test --test-reporter=spec "${pattern_args[@]}" test/cuda.test.js 2>&1 | tee "$out/tests.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

if [ "$kernel_times" = 1 ]; then
  echo "== cuda_kernel_tests --time"
  build/Release/cuda_kernel_tests --time 2>&1 | tee "$out/kernel-times.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
for type in $profile; do
  file=/tmp/llama7b-$type.gguf
  [ -e "$file" ] || node bench/random-model.js --shape llama7b --type "$type" --repeat-rows 64 --out "$file" > /dev/null || { status=1; continue; }
  # 40 tokens: loading and the first steps are skipped, then 900 kernels: whole steps of fewer than 300 each (profile.py).
  LLAMA_NAPI_CUDA_GRAPHS=0 "$ncu" --clock-control none --cache-control none --launch-skip 6000 --launch-count 900 --csv \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum node -e '
      const { loadModel } = require("./dist/cjs/index.js");
      (async () => {
        const model = await loadModel(process.argv[1], { device: "cuda", contextSize: 1024 });
        await model.nativeGreedy({ tokens: [1] }, 40);
        await model.dispose();
      })();' "$file" > "$out/profile-$type.csv" 2> "$out/profile-$type.err" || status=1
  echo "== decode profile, $type"
  python3 bench/cuda/profile.py "$out/profile-$type.csv" | tee "$out/profile-$type.md" || status=1
  [[ " $types " == *" $type "* ]] || rm -f "$file" # else the benchmark below reads it
done

if [ -n "$types" ]; then
  table="$out/bench.md"
  echo "| type | file GiB | load s | tg128 engine loop | tg128 JS loop | roofline tok/s (3.0 TB/s) | of roofline | pp512 | tg128 after $depth |" > "$table"
  echo "|---|---|---|---|---|---|---|---|---|" >> "$table"
  for type in $types; do
    file=/tmp/llama7b-$type.gguf
    start=$(date +%s)
    [ -e "$file" ] || node bench/random-model.js --shape llama7b --type "$type" --repeat-rows 64 --out "$file" > /dev/null || { status=1; continue; }
    echo "== $type: written in $(( $(date +%s) - start )) s"
    for variant in "" $also; do
      line=$(env $variant node bench/cuda/bench.js --model "$file" --depth "$depth" 2>&1 | tail -1)
      echo "$line" | tee -a "$out/bench.jsonl"
      node -e '
        const r = JSON.parse(process.argv[1]), note = process.argv[2] ? ` (${process.argv[2]})` : "";
        console.log(`| ${r.weightType}${note} | ${(r.bytes / 2 ** 30).toFixed(2)} | ${r.loadSeconds} | ${r.tg128} | ${r.tg128Js} | ${r.rooflineTokS} | ${(100 * r.tgOfRoofline).toFixed(0)}% | ${r.pp512} | ${r.tg128AtDepth ?? "-"} |`);
      ' "$line" "$variant" >> "$table" || status=1
    done
    if [ -n "$concurrency" ]; then
      echo "== $type: $concurrency concurrent sequences"
      node bench/concurrency.js --model "$file" --device cuda --streams "$concurrency" --tokens 128 --runs 3 2>&1 | tee -a "$out/concurrency.md" || status=1
    fi
    if [ -n "$server_clients" ]; then
      echo "== $type: $server_clients streaming clients through the server"
      node bench/server-load.js --model "$file" --clients "$server_clients" --parallel "$server_clients" --duration 30 \
        --warmup 5 --max-tokens 128 --ctx-size 512 --kv-tokens $(( server_clients * 1024 )) 2>&1 | tee -a "$out/server-load.md" || status=1
    fi
    for spec in ${kv_capacity//,/ }; do
      IFS=: read -r streams ctx kv_type <<< "$spec"
      echo "== $type: KV pool of $streams x $ctx positions, $kv_type"
      node bench/kv-capacity.js --model "$file" --streams "$streams" --ctx "$ctx" --kv-type "$kv_type" 2>&1 | tee -a "$out/kv-capacity.md" || status=1
    done
    [ "$llamacpp" = 1 ] || rm -f "$file"
  done
  cat "$table"
fi

if [ "$llamacpp" = 1 ]; then
  while [ ! -e /tmp/llamacpp/done ]; do sleep 2; done
  echo "== llama.cpp build: exit $(cat /tmp/llamacpp/done) ($(cd /tmp/llamacpp/src && cat .git-commit 2>/dev/null))"
  for type in $types; do
    "$llamacpp_bin/llama-bench" -m /tmp/llama7b-$type.gguf -ngl 99 -fa 1 -p 512 -n 128 -r 3 -o md 2>&1 | tee -a "$out/llamacpp-bench.md" || status=1
    if [ "$depth" -gt 0 ]; then
      "$llamacpp_bin/llama-bench" -m /tmp/llama7b-$type.gguf -ngl 99 -fa 1 -p 0 -n 128 -d "$depth" -r 3 -o md 2>&1 | tee -a "$out/llamacpp-bench.md" || status=1
    fi
    if [ -n "$concurrency" ]; then
      # Each sequence its own 4 + 128 positions of a unified cache, as the streams above have.
      max=$(tr , '\n' <<< "$concurrency" | sort -n | tail -1)
      "$llamacpp_bin/llama-batched-bench" -m /tmp/llama7b-$type.gguf -ngl 99 -fa on -c $(( max * 132 )) -b 2048 -ub 512 \
        -npp 4 -ntg 128 -npl "$concurrency" 2>&1 | grep '^|' | tee -a "$out/llamacpp-batched.md" || status=1
    fi
    rm -f /tmp/llama7b-$type.gguf
  done
fi
exit $status
