// A null pointer is not a layer name.
#include "cnnviz/layers.hpp"

static size_t count(const cnnviz::Layers& layers) { return layers.size(); }

int main() {
#ifdef CNNVIZ_CONTROL
  const char* name = "layer2";
  return static_cast<int>(count(name));
#else
  return static_cast<int>(count(nullptr));
#endif
}
