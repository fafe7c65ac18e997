// Layers{{"a", "b"}} must not build one std::string from two unrelated pointers.
#include "cnnviz/layers.hpp"

int main() {
#ifdef CNNVIZ_CONTROL
  cnnviz::Layers layers{"layer2", "layer3"};
#else
  cnnviz::Layers layers{{"layer2", "layer3"}};
#endif
  return static_cast<int>(layers.size());
}
