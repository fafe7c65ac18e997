#pragma once
// A TorchScript module (traced or scripted) as a Model. Capture edits a copy of the
// forward graph: the calls along each requested module path are inlined until the
// target's call sits in the top graph, its value becomes an output, and what no output
// needs is pruned, so the forward stops at the deepest requested layer.
//
// The module is held behind a pointer, so this header needs no <torch/script.h>: code that
// builds a torch::jit::Module itself (torch::jit::load) includes that header; loading a file
// is ScriptModel::load.

#include <torch/torch.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cnnviz/model.hpp"

namespace torch {
namespace jit {
struct Module;
}  // namespace jit
}  // namespace torch

namespace cnnviz {

class ScriptModel final : public ModelBase {
 public:
  /// Wraps a loaded module (shares its parameters; never modifies it).
  explicit ScriptModel(torch::jit::Module module);
  /// Loads a TorchScript file (torch.jit.save / torch::jit::save). A missing or unreadable
  /// file is cnnviz::FileNotFoundError / FileError; a file that is not TorchScript, ValueError.
  static ScriptModel load(const std::string& path);

  /// Logits: x (N, C, H, W) -> (N, K).
  torch::Tensor forward(const torch::Tensor& x) override;
  CaptureResult capture(const torch::Tensor& x, const CaptureRequest& request) override;
  std::vector<LayerInfo> layers() const override;
  std::vector<torch::Tensor> parameters() const override;
  torch::Tensor parameter(const std::string& layer, const std::string& name) const override;
  std::string describe() const override { return "ScriptModel"; }
  bool can_cut() const override { return true; }

  /// The wrapped module (shared with the caller's handle: a module is a reference).
  const torch::jit::Module& module() const { return *module_; }

 private:
  struct Plan;
  std::shared_ptr<Plan> plan_for(const CaptureRequest& request);

  std::shared_ptr<torch::jit::Module> module_;
  std::vector<LayerInfo> layers_;
  // Capture graphs, compiled once per request (layers, need_output, relu mode).
  std::shared_ptr<std::map<std::string, std::shared_ptr<Plan>>> plans_;
  std::shared_ptr<std::mutex> plans_mutex_;
};

}  // namespace cnnviz
