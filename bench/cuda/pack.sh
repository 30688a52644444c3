#!/bin/bash
# Prepares .cudapack/ (git-ignored) for a run on the lent GPU machine, which has no Node and no internet and takes
# at most 64 MiB per call: the CUDA build (build-cuda/Release, from `LLAMA_NAPI_CUDA=1 LLAMA_NAPI_BUILD_TESTS=1 LLAMA_NAPI_CUDA_ARCHS=90 npx cmake-js compile
# -O build-cuda`), dist/ and the runtime node_modules as one tar.xz, and the chosen test models (bf16 weights as
# byte planes, bench/cuda/planes.py). Then call the device with carry [".device", ".cudapack"] and
# `bash bench/cuda/run.sh ...`. Usage: bench/cuda/pack.sh MODEL_SET...   (small, sotu-l2-23m, sotu-l2-23m-meta,
# sotu-l3-26m; `small` = stories260K and the Llama 2 vocabulary that bench/random-model.js needs, and which
# test/cuda.test.js reads at load; --llamacpp: llama.cpp's source for run.sh --llamacpp). One trained set per call: `small sotu-l3-26m` is 63.2 MiB, the largest that
# fits (then `run.sh --tests sotu-l3 --no-bench`).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
models=${LLAMA_NAPI_TEST_MODELS:-$root/../shared/models}
cache=/tmp/llama-napi-cudapack-cache
../shared/device/pack.sh >/dev/null # .device/: the Node binary and env.sh
rm -rf .cudapack && mkdir -p .cudapack "$cache"

stage=$(mktemp -d)
mkdir -p "$stage/build/Release"
cp build-cuda/Release/llama_napi.node build-cuda/Release/cuda_kernel_tests "$stage/build/Release/"
cp -r dist "$stage/"
cp package.json package-lock.json "$stage/"
(cd "$stage" && cp -r "$root/node_modules" . && npm prune --omit=dev --ignore-scripts >/dev/null 2>&1 &&
  rm -rf node_modules/cmake-js node_modules/node-addon-api && find node_modules \( -name '*.map' -o -name test -type d \) -prune -exec rm -rf {} +)
strip --strip-unneeded "$stage"/build/Release/* # the call's 64 MiB: symbols are not needed to run
tar -C "$stage" -cJf .cudapack/runtime.tar.xz build dist node_modules
rm -rf "$stage"

for set in "$@"; do
  case "$set" in
    --llamacpp) # llama.cpp's source as node-llama-cpp carries it (../shared/peers/build-llamacpp.sh fetched it), without
      # its docs, models and the backends other than CPU and CUDA, for run.sh --llamacpp
      src=${PEERS:-$HOME/.cache/llama-napi-peers}/llamacpp/src
      (cd "$src" && git rev-parse --short HEAD > .git-commit && tar --exclude=.git --exclude=./docs --exclude=./models \
        --exclude=./media --exclude=./gguf-py --exclude=./benches --exclude='./ggml/src/ggml-'{metal,sycl,vulkan,opencl,hexagon,et,cann,musa} \
        -cJf "$root/.cudapack/llamacpp-src.tar.xz" .) ;;
    small) tar -C "$models" -cJf .cudapack/models-small.tar.xz MANIFEST.md tinystories gguf/llama-2-tiny-random.gguf vocab/ggml-vocab-llama-spm.gguf ;;
    sotu-l2-23m | sotu-l2-23m-meta | sotu-l3-26m)
      extra=()
      [ "$set" = sotu-l3-26m ] && extra=(llama3/tokenizer.json)
      [ "$set" = sotu-l2-23m-meta ] && extra=(trained/sotu-l2-23m/reference-public.json trained/sotu-l2-23m/logits-public.f32)
      weights=$(cd "$models" && ls trained/$set/*.safetensors trained/$set/*.pth 2>/dev/null || true)
      tar -C "$models" -cJf ".cudapack/models-$set.tar.xz" --exclude="$(basename "$weights")" "trained/$set" "${extra[@]}"
      key="$cache/$(echo "$weights" | tr / _)"
      [ -f "$key.odd.xz" ] || python3 bench/cuda/planes.py split "$models/$weights" "$key"
      mkdir -p .cudapack/planes
      cp "$key.even.xz" "$key.odd.xz" .cudapack/planes/
      echo "$weights" > ".cudapack/planes/$(basename "$key").path"
      ;;
    *) echo "unknown model set: $set" >&2; exit 2 ;;
  esac
done
du -b .device .cudapack | tail -n 2
echo "total: $(( ($(du -sb .device | cut -f1) + $(du -sb .cudapack | cut -f1) + $(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)) / 1048576 )) MiB of 64"
