// ThreadScope and the thread setting: a light translation unit (no torch/torch.h), compiled
// with OpenMP so the count can be set for the calling thread alone.
#include "cnnviz/detail/thread_scope.hpp"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>
#include <omp.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace cnnviz {
namespace {
std::atomic<int> setting{0};

/// CNNVIZ_NUM_THREADS: 0 when unset, empty or "auto", else a positive integer.
int environment_threads() {
  const char* v = std::getenv("CNNVIZ_NUM_THREADS");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return 0;
  errno = 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  TORCH_CHECK_VALUE(errno == 0 && end != v && *end == '\0' && n >= 1 && n <= 4096,
                    "cnnviz: CNNVIZ_NUM_THREADS must be a positive integer or 'auto', got '", v, "'");
  return static_cast<int>(n);
}
/// OpenBLAS's process-wide thread count, found at run time (torch links whichever BLAS the
/// system provides): lowered while any ThreadScope below it runs. Torch's batch-of-one
/// convolutions (its native path, im2col + sgemm) call it, and at the BLAS's default of one
/// thread per core its workers spin against the intra-op threads: one ResNet-20 forward of a
/// 32x32 image took 3.8 ms of CPU on one BLAS thread and 6.6 ms on two (benchmarks/RESULTS.md).
struct Blas {
  using Set = void (*)(int);
  using Get = int (*)();
  Set set = reinterpret_cast<Set>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  Get get = reinterpret_cast<Get>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  std::mutex mutex;
  int holders = 0;  // scopes that lowered the count
  int saved = 0;    // the count before the first of them
  int current = 0;  // the lowered count (the smallest asked for)

  static Blas& get_instance() {
    static Blas* blas = new Blas();  // never destroyed: scopes may end during static teardown
    return *blas;
  }
  bool available() const { return set != nullptr && get != nullptr; }

  /// Lowers the count to `threads` when that is below the count in force; true if this
  /// scope now holds the lowered count.
  bool lower(int threads) {
    if (!available()) return false;
    std::lock_guard<std::mutex> lock(mutex);
    const int now = holders > 0 ? current : get();
    if (holders == 0 && threads >= now) return false;
    if (holders == 0) saved = now;
    if (threads < now) {
      set(threads);
      current = threads;
    }
    ++holders;
    return true;
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    if (--holders == 0) set(saved);
  }
};
}  // namespace

void set_num_threads(int n) {
  TORCH_CHECK_VALUE(n >= 0, "cnnviz: the number of threads must be positive (or 0 for automatic), got ", n);
  setting.store(n);
}

int get_num_threads() { return setting.load(); }

namespace detail {

int choose_num_threads(double work, int budget) {
  if (const int n = setting.load(); n > 0) return n;
  if (const int n = environment_threads(); n > 0) return n;
  budget = budget < 1 ? 1 : budget;
  return work < kSmallWork ? 1 : budget;
}

int current_num_threads() { return at::get_num_threads(); }

int blas_num_threads() {
  auto& blas = Blas::get_instance();
  return blas.available() ? blas.get() : 0;
}

}  // namespace detail

// at::get_num_threads first: it initializes this thread's count from torch's setting, which
// would otherwise overwrite ours at the first parallel loop. at::set_num_threads is avoided:
// besides this thread's count it rewrites torch's default for new threads, resizes the
// process-wide pthreadpool and clears oneDNN's primitive cache.
ThreadScope::ThreadScope(int threads) : saved_(at::get_num_threads()), threads_(threads > 0 ? threads : saved_) {
  if (threads_ != saved_) omp_set_num_threads(threads_);
  // Also when the caller already runs on this count: OpenBLAS does not follow torch's.
  if (threads > 0) blas_lowered_ = Blas::get_instance().lower(threads_);
}

ThreadScope::~ThreadScope() {
  if (blas_lowered_) Blas::get_instance().release();
  if (threads_ != saved_) omp_set_num_threads(saved_);
}

}  // namespace cnnviz
