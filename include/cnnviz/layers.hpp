#pragma once
// Layer names as function arguments: `Layer` for functions that take exactly one layer,
// `Layers` for those that take one or many. Both exist because a brace list such as
// {"layer2", "layer3"} would otherwise bind to std::string's iterator-pair constructor and
// read past the first literal. Light on purpose (no torch): the compile-fail tests include
// only this header.

#include <cstddef>
#include <initializer_list>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace cnnviz {

/// One layer, named by its qualified module name ("features.28", "layer4.1.conv2",
/// "relu:1" for the second call of a module). Built from a string; a brace list is
/// rejected at compile time (it names several layers: use a function taking Layers).
class Layer {
 public:
  Layer(const char* name) : name_(name ? name : "") {}        // NOLINT: implicit by design
  Layer(std::string name) : name_(std::move(name)) {}         // NOLINT: implicit by design
  Layer(std::nullptr_t) = delete;                             // a null name is a bug
  Layer(std::initializer_list<std::string>) = delete;          // several names: use Layers

  const std::string& name() const { return name_; }
  operator const std::string&() const { return name_; }  // NOLINT: reads as the name
  friend std::ostream& operator<<(std::ostream& os, const Layer& l) { return os << l.name_; }

 private:
  std::string name_;
};

/// One layer or several, in order: a name, a std::vector<std::string> or a brace list
/// {"layer2", "layer3"}. Converts to the vector the algorithms use.
class Layers {
 public:
  Layers() = default;
  Layers(const char* name) : names_{Layer(name).name()} {}            // NOLINT: implicit by design
  Layers(std::string name) : names_{std::move(name)} {}              // NOLINT: implicit by design
  Layers(const Layer& layer) : names_{layer.name()} {}                // NOLINT: implicit by design
  Layers(std::vector<std::string> names) : names_(std::move(names)) {}  // NOLINT: implicit by design
  Layers(std::initializer_list<Layer> names) {                         // NOLINT: implicit by design
    names_.reserve(names.size());
    for (const auto& n : names) names_.push_back(n.name());
  }
  Layers(std::nullptr_t) = delete;

  const std::vector<std::string>& names() const { return names_; }
  operator const std::vector<std::string>&() const { return names_; }  // NOLINT: reads as the list
  size_t size() const { return names_.size(); }
  bool empty() const { return names_.empty(); }
  const std::string& operator[](size_t i) const { return names_[i]; }
  auto begin() const { return names_.begin(); }
  auto end() const { return names_.end(); }

 private:
  std::vector<std::string> names_;
};

}  // namespace cnnviz
