#pragma once
// The intra-op thread count of one cnnviz call, without torch headers (compiled in
// src/threads.cpp, which needs OpenMP). The policy with a model and a batch is in
// cnnviz/threads.hpp.

namespace cnnviz {

/// cnnviz's own thread setting for its calls, process-wide: 0 (the default) chooses by the
/// size of the work, n > 0 runs every call on n intra-op threads. Throws c10::ValueError
/// for n < 0.
void set_num_threads(int n);
/// The setting of set_num_threads (0: by the size of the work).
int get_num_threads();

namespace detail {

/// Input elements per pass times parameters (see threads.hpp) below which a call runs on
/// one thread: ResNet-20 on up to 4 CIFAR images (3.3e9); MobileNetV2 or VGG16 on one
/// 224x224 image (5e11, 2e13) stay on the caller's count.
constexpr double kSmallWork = 5e9;

/// The count a call of `work` runs at: cnnviz::set_num_threads if set, else the
/// environment variable CNNVIZ_NUM_THREADS if set (a positive integer, or "auto"), else 1
/// for work below kSmallWork and `budget` (the caller's torch thread count) otherwise.
/// The automatic choice never exceeds the budget.
int choose_num_threads(double work, int budget);

/// The calling thread's intra-op thread count (torch.get_num_threads of this thread).
int current_num_threads();

}  // namespace detail

/// Runs the calling thread on `threads` intra-op threads for its lifetime and restores the
/// previous count after, however the scope ends. Only the calling thread is affected (the
/// count is OpenMP's per-thread setting, which torch's parallel loops and oneDNN read), so
/// calls in several threads do not interfere, and torch's process-wide default for new
/// threads is left alone. threads <= 0 changes nothing.
///
/// OpenBLAS (which torch's batch-of-one convolutions call for their matrix products) keeps
/// its own, process-wide thread count that the intra-op setting does not reach: a scope
/// of fewer threads lowers it to `threads` too while any such scope runs, and the last one to end
/// restores it (meanwhile other threads' matrix products run on fewer BLAS threads as
/// well). A process without OpenBLAS is unaffected.
class ThreadScope {
 public:
  explicit ThreadScope(int threads);
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;
  /// The count this scope runs at.
  int threads() const { return threads_; }

 private:
  int saved_;
  int threads_;
  bool blas_lowered_ = false;
};

namespace detail {
/// OpenBLAS's thread count in this process (0 when OpenBLAS is not loaded).
int blas_num_threads();
}  // namespace detail

}  // namespace cnnviz
