#pragma once
// Layer-name requests: "name" or "name:k", validated against a model's layer list with
// an error that suggests the closest names.

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace cnnviz {
namespace detail {

/// One parsed request: `spelled` as given, `name` without the call index, `call` the
/// 0-based call index or -1 for "the last call".
struct LayerRequest {
  std::string spelled;
  std::string name;
  int64_t call = -1;
};

/// Levenshtein distance, for suggestions.
inline size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

/// Up to `k` names from `names` closest to `name`, comma separated.
inline std::string closest_names(const std::string& name, const std::vector<std::string>& names,
                                 size_t k = 5) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (auto& n : names) scored.emplace_back(edit_distance(name, n), n);
  std::stable_sort(scored.begin(), scored.end(),
                   [](auto& a, auto& b) { return a.first < b.first; });
  std::ostringstream os;
  for (size_t i = 0; i < std::min(k, scored.size()); ++i) os << (i ? ", " : "") << scored[i].second;
  return os.str();
}

/// Parses "name" / "name:k" without validating the name.
inline LayerRequest parse_request(const std::string& spelled) {
  TORCH_CHECK_VALUE(!spelled.empty(), "cnnviz: empty layer name");
  LayerRequest r{spelled, spelled, -1};
  auto colon = spelled.rfind(':');
  if (colon != std::string::npos) {
    std::string idx = spelled.substr(colon + 1);
    TORCH_CHECK_VALUE(!idx.empty() && std::all_of(idx.begin(), idx.end(), ::isdigit),
                      "cnnviz: bad layer '", spelled, "': the call index after ':' must be a "
                      "non-negative integer");
    r.name = spelled.substr(0, colon);
    r.call = std::stoll(idx);
  }
  return r;
}

/// Parses and validates requests against the known names. Throws IndexError-type errors
/// for unknown names, listing the closest known names; ValueError for an empty list.
inline std::vector<LayerRequest> parse_requests(const std::vector<std::string>& layers,
                                                const std::vector<std::string>& known,
                                                bool allow_empty = true) {
  TORCH_CHECK_VALUE(allow_empty || !layers.empty(), "cnnviz: the list of layers is empty");
  std::vector<LayerRequest> out;
  for (auto& spelled : layers) {
    auto r = parse_request(spelled);
    bool found = std::find(known.begin(), known.end(), r.name) != known.end();
    TORCH_CHECK_VALUE(found, "cnnviz: unknown layer '", r.name, "'",
                      known.empty() ? std::string(" (the model lists no layers)")
                                    : "; closest names: " + closest_names(r.name, known));
    out.push_back(r);
  }
  return out;
}

/// Which call of a layer a request means, given how often the layer ran; -1 when it never
/// ran and `skip_missing` is set. Errors name the layer and what happened.
inline int64_t resolve_call(const LayerRequest& r, int64_t count, bool skip_missing) {
  if (count == 0) {
    TORCH_CHECK_VALUE(skip_missing, "cnnviz: layer '", r.name,
                      "' never ran in the forward pass (an unused branch, or a module the "
                      "forward does not call)");
    return -1;
  }
  if (r.call < 0) return count - 1;
  TORCH_CHECK_INDEX(r.call < count, "cnnviz: layer '", r.name, "' ran ", count,
                    " time(s) in the forward pass; call index ", r.call, " does not exist");
  return r.call;
}

}  // namespace detail
}  // namespace cnnviz
