// Copy-list-initializing one Layer from several names is rejected.
#include "cnnviz/layers.hpp"

int main() {
#ifdef CNNVIZ_CONTROL
  cnnviz::Layer layer = "layer2";
#else
  cnnviz::Layer layer = {"layer2", "layer3"};
#endif
  return static_cast<int>(layer.name().size());
}
