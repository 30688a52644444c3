// pageIn(files, ranges, onProgress): reads the model's tensor data once, reporting progress, before the engine maps it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "binding.h"

namespace llama_napi {

namespace {

// Reads byte ranges of the model files (the tensor data) once, in chunks, on a libuv worker, reporting the bytes
// done after each chunk. The reads fill the page cache that the engine's read-only mappings share, so a load with
// progress does the disk work the first forward pass (or the GPU upload) would otherwise do unseen. pread, not
// touching a mapping: a file shorter than a range is an error here, never a SIGBUS.
class PageInWorker : public Napi::AsyncProgressQueueWorker<uint64_t> {
 public:
  struct Range {
    int file;
    uint64_t offset, length;
  };

  PageInWorker(Napi::Env env, std::vector<std::string> files, std::vector<Range> ranges, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<uint64_t>(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        files_(std::move(files)),
        ranges_(std::move(ranges)),
        on_progress_(Napi::Persistent(on_progress)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    // Large enough that the per-call overhead vanishes, small enough that progress moves smoothly.
    const size_t kChunk = 8u << 20;
    std::vector<char> buffer;
    try {
      buffer.resize(kChunk);
    } catch (const std::bad_alloc&) {
      SetError("out of memory for an 8 MiB read buffer");
      return;
    }
    uint64_t done = 0;
    for (size_t f = 0; f < files_.size(); f++) {
      const char* path = files_[f].c_str();
      const int fd = open(path, O_RDONLY | O_CLOEXEC);
      struct stat st;
      if (fd < 0 || fstat(fd, &st) != 0) {
        SetError(std::string("cannot read ") + path + ": " + strerror(errno));
        if (fd >= 0) close(fd);
        return;
      }
#ifdef POSIX_FADV_SEQUENTIAL
      posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
      for (const Range& r : ranges_) {
        if (r.file != (int)f) continue;
        if (r.offset > (uint64_t)st.st_size || r.length > (uint64_t)st.st_size - r.offset) {
          error_code_ = "MODEL_FORMAT";
          SetError(std::string(path) + ": tensor data at " + std::to_string(r.offset) + " + " + std::to_string(r.length) +
                   " bytes runs past the end of the file (" + std::to_string((long long)st.st_size) + " bytes)");
          close(fd);
          return;
        }
        for (uint64_t at = r.offset, end = r.offset + r.length; at < end;) {
          const ssize_t n = pread(fd, buffer.data(), (size_t)std::min<uint64_t>(kChunk, end - at), (off_t)at);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            SetError(std::string("cannot read ") + path + " at " + std::to_string(at) + ": " +
                     (n == 0 ? "unexpected end of file" : strerror(errno)));
            close(fd);
            return;
          }
          at += (uint64_t)n;
          done += (uint64_t)n;
          progress.Send(&done, 1);
        }
      }
      close(fd);
    }
  }

  // Every chunk's count arrives, in order, even when JS is busy (a coalescing worker could deliver as few as the
  // last one on a loaded machine): the counts rise strictly, and the last equals the total before the promise
  // resolves.
  void OnProgress(const uint64_t* done, size_t count) override {
    if (count > 0) on_progress_.Call({Napi::Number::New(Env(), (double)*done)});
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

  void OnError(const Napi::Error& error) override {
    error.Set("code", Napi::String::New(Env(), error_code_));
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> files_;
  std::vector<Range> ranges_;
  Napi::FunctionReference on_progress_;
  const char* error_code_ = "SYSTEM_ERROR";
};

Napi::Value StartPageIn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw ArgumentError(env, "files", "pageIn: files must be an array of paths");
  Napi::Array file_array = info[0].As<Napi::Array>();
  std::vector<std::string> files;
  for (uint32_t i = 0; i < file_array.Length(); i++) {
    Napi::Value path = file_array.Get(i);
    if (!path.IsString()) throw ArgumentError(env, "files", "pageIn: files[" + std::to_string(i) + "] must be a string");
    files.push_back(path.As<Napi::String>().Utf8Value());
  }
  if (!info[1].IsArray()) throw ArgumentError(env, "ranges", "pageIn: ranges must be an array");
  Napi::Array range_array = info[1].As<Napi::Array>();
  std::vector<PageInWorker::Range> ranges;
  for (uint32_t i = 0; i < range_array.Length(); i++) {
    const std::string where = "pageIn: ranges[" + std::to_string(i) + "]";
    Napi::Value item = range_array.Get(i);
    if (!item.IsObject()) throw ArgumentError(env, "ranges", where + " must be an object");
    Napi::Object r = item.As<Napi::Object>();
    PageInWorker::Range range;
    range.file = (int)IntegerValue(Property(r, "file", where), where + ".file", "file", 0, (double)files.size() - 1);
    range.offset = (uint64_t)IntegerValue(Property(r, "offset", where), where + ".offset", "offset", 0, kMaxSafeInteger);
    range.length = (uint64_t)IntegerValue(Property(r, "length", where), where + ".length", "length", 0, kMaxSafeInteger);
    ranges.push_back(range);
  }
  if (!info[2].IsFunction()) throw ArgumentError(env, "onProgress", "pageIn: onProgress must be a function");
  return Queued(new PageInWorker(env, std::move(files), std::move(ranges), info[2].As<Napi::Function>()));
}


}  // namespace

void RegisterWeights(Napi::Env env, Napi::Object exports) {
  exports.Set("pageIn", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                return Promised(info.Env(), [&]() { return StartPageIn(info); });
              }));
}

}  // namespace llama_napi
