// ThreadScope and the thread setting: a light translation unit (no torch/torch.h), compiled
// with OpenMP so the count can be set for the calling thread alone.
#include "cnnviz/detail/thread_scope.hpp"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <omp.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
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

}  // namespace detail

// at::get_num_threads first: it initializes this thread's count from torch's setting, which
// would otherwise overwrite ours at the first parallel loop. at::set_num_threads is avoided:
// besides this thread's count it rewrites torch's default for new threads, resizes the
// process-wide pthreadpool and clears oneDNN's primitive cache.
ThreadScope::ThreadScope(int threads) : saved_(at::get_num_threads()), threads_(threads > 0 ? threads : saved_) {
  if (threads_ != saved_) omp_set_num_threads(threads_);
}

ThreadScope::~ThreadScope() {
  if (threads_ != saved_) omp_set_num_threads(saved_);
}

}  // namespace cnnviz
