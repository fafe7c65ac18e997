// A would-be Model that lacks capture() fails with a static_assert naming the member.
// (This one parses the torch headers: the only compile-fail test that does.)
#include "cnnviz/model.hpp"

struct NoCapture {
  torch::Tensor forward(const torch::Tensor& x) { return x; }
#ifdef CNNVIZ_CONTROL
  cnnviz::CaptureResult capture(const torch::Tensor& x, const cnnviz::CaptureRequest&) { return {x, {}}; }
#endif
  std::vector<cnnviz::LayerInfo> layers() const { return {}; }
};

int main() {
  cnnviz::AnyModel model = NoCapture{};
  return model.defined() ? 0 : 1;
}
