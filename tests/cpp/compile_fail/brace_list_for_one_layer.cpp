// A function taking one layer must reject a brace list of names (which would bind to
// std::string's iterator-pair constructor and read past the first literal).
#include "cnnviz/layers.hpp"

static std::string invert_like(const cnnviz::Layer& layer) { return layer; }

int main() {
#ifdef CNNVIZ_CONTROL
  return static_cast<int>(invert_like("layer2").size());
#else
  return static_cast<int>(invert_like({"layer2", "layer3"}).size());
#endif
}
