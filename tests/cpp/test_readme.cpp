// The README's C++ example, compiled and run as written (CMake copies the block into
// readme_example.inc at configure time).
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "cnnviz/cnnviz.hpp"

TEST_CASE("the README's C++ example compiles and runs") {
  const char* data = std::getenv("CNNVIZ_DATA");
  if (!data || !std::filesystem::exists(std::string(data) + "/weights/resnet20_cifar10_traced.pt")) {
    MESSAGE("sample data not found (set CNNVIZ_DATA): the example compiled but did not run");
    return;
  }
  // The example names the model file relative to the working directory.
  struct Cwd {
    std::filesystem::path saved = std::filesystem::current_path();
    ~Cwd() { std::filesystem::current_path(saved); }
  } cwd;
  std::filesystem::current_path(std::string(data) + "/weights");
#include "readme_example.inc"
  CHECK(r.activations.size() == 2);
  CHECK(r.output.sizes() == torch::IntArrayRef({1, 10}));
  CHECK(cams.maps.size() == 2);
  CHECK(inv.losses.size(0) == 20);
}
