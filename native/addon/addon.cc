// The module: Init registers each file's part of the binding (binding.h describes the layout), and the few
// functions that describe the machine and the build.
#include "binding.h"

extern "C" {
#include "cpu_features.h"
#ifdef LLAMA_NAPI_HAVE_CUDA
#include "llm_cuda.h"
#endif
}

namespace {

using namespace llama_napi;

// Physical CPU cores (not hyperthreads): the default thread count.
Napi::Value PhysicalCores(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), llm_physical_cores()); }

// Which kernel set the CPU dispatch picked: "avx512-vnni", "avx512", "avx2-vnni", "avx2", "neon-i8mm", "neon-dotprod",
// "neon" or "scalar".
Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), llm_kernel_set_name(llm_kernel_set()));
}

// {compiled, devices, reason?}: whether this build has the CUDA backend, how many GPUs it can use, and why none.
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
#ifdef LLAMA_NAPI_HAVE_CUDA
  char why[256] = "";
  const int devices = llm_cuda_device_count(why, sizeof why);
  result.Set("compiled", true);
  result.Set("devices", devices);
  if (devices == 0) result.Set("reason", why);
#else
  result.Set("compiled", false);
  result.Set("devices", 0);
  result.Set("reason", kNoCudaBackend);
#endif
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("physicalCores", Napi::Function::New<PhysicalCores>(env));
  exports.Set("cpuFeatures", Napi::Function::New<CpuFeatures>(env));
  exports.Set("cudaInfo", Napi::Function::New<CudaInfo>(env));
  // One line per file of the binding (each declared in binding.h).
  RegisterModel(env, exports);
  RegisterContext(env, exports);
  RegisterWeights(env, exports);
  RegisterConversion(env, exports);
  RegisterSampler(env, exports);
  RegisterDecodeLoop(env, exports);
  RegisterGrammar(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(llama_napi, Init)
