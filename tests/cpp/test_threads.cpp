// ThreadScope and the thread policy (cnnviz/threads.hpp).
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <thread>

#include "cnnviz/threads.hpp"

namespace {
struct EnvGuard {
  explicit EnvGuard(const char* value) {
    if (value) setenv("CNNVIZ_NUM_THREADS", value, 1);
    else unsetenv("CNNVIZ_NUM_THREADS");
  }
  ~EnvGuard() { unsetenv("CNNVIZ_NUM_THREADS"); }
};
}  // namespace

TEST_CASE("ThreadScope sets this thread's count and restores it, also after an exception") {
  const int before = at::get_num_threads();
  {
    cnnviz::ThreadScope scope(before + 1);
    CHECK(scope.threads() == before + 1);
    CHECK(at::get_num_threads() == before + 1);
    int other = 0;
    std::thread([&] { other = at::get_num_threads(); }).join();
    CHECK(other != before + 1);  // another thread keeps torch's count
  }
  CHECK(at::get_num_threads() == before);
  try {
    cnnviz::ThreadScope scope(before + 2);
    throw std::runtime_error("x");
  } catch (const std::runtime_error&) {
  }
  CHECK(at::get_num_threads() == before);
  cnnviz::ThreadScope none(0);  // changes nothing
  CHECK(at::get_num_threads() == before);
}

TEST_CASE("the policy: one thread for small work, the budget for large; setting and environment override") {
  EnvGuard env(nullptr);
  using cnnviz::detail::choose_num_threads;
  using cnnviz::detail::kSmallWork;
  CHECK(choose_num_threads(kSmallWork / 2, 4) == 1);
  CHECK(choose_num_threads(kSmallWork * 2, 4) == 4);
  CHECK(choose_num_threads(kSmallWork * 2, 0) == 1);
  {
    EnvGuard three("3");
    CHECK(choose_num_threads(kSmallWork / 2, 4) == 3);
    cnnviz::set_num_threads(2);
    CHECK(choose_num_threads(kSmallWork / 2, 4) == 2);  // the explicit setting wins
    cnnviz::set_num_threads(0);
  }
  {
    EnvGuard bad("lots");
    CHECK_THROWS_AS(choose_num_threads(1, 2), c10::ValueError);
  }
  CHECK_THROWS_AS(cnnviz::set_num_threads(-1), c10::ValueError);
}

TEST_CASE("estimated_work: input elements per pass times parameters") {
  auto seq = torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)));  // 112 parameters
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::zeros({2, 3, 8, 8});
  CHECK(cnnviz::estimated_work(model, x, 5) == doctest::Approx(5.0 * 192 * 112));
  EnvGuard env(nullptr);
  CHECK(cnnviz::policy_threads(model, x, 5) == 1);
}

TEST_CASE("estimated_work: a model without parameters has unknown work and keeps the caller's count") {
  // A callable wrapping a network (the incremental occlusion engine, a user's lambda) shows
  // no parameters: taking it for a tiny network would run a VGG16 on one thread.
  cnnviz::AnyModel fn = cnnviz::FunctionModel([](const torch::Tensor& t) { return t.flatten(1); });
  auto x = torch::zeros({1, 3, 8, 8});
  CHECK(std::isinf(cnnviz::estimated_work(fn, x, 1)));
  EnvGuard env(nullptr);
  const int caller = cnnviz::detail::current_num_threads();
  CHECK(cnnviz::policy_threads(fn, x, 1) == caller);
  {
    cnnviz::ThreadScope three(3);
    CHECK(cnnviz::policy_threads(fn, x, 1) == 3);
  }
}

TEST_CASE("ThreadScope lowers OpenBLAS's process-wide count while any lowering scope runs") {
  const int before = cnnviz::detail::blas_num_threads();
  if (before < 2) return;  // no OpenBLAS, or one thread already: nothing to lower
  {
    cnnviz::ThreadScope outer(1);
    CHECK(cnnviz::detail::blas_num_threads() == 1);
    {
      cnnviz::ThreadScope inner(1);
      CHECK(cnnviz::detail::blas_num_threads() == 1);
    }
    CHECK(cnnviz::detail::blas_num_threads() == 1);  // the outer scope still holds it
    int seen = 0;
    std::thread([&] {
      cnnviz::ThreadScope other(before);  // a scope at the full count does not raise it
      seen = cnnviz::detail::blas_num_threads();
    }).join();
    CHECK(seen == 1);
  }
  CHECK(cnnviz::detail::blas_num_threads() == before);
}
