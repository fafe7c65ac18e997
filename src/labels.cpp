// load_labels: class-name files by path or by the name of an installed label set. No torch
// here: the directories are this file's compile definitions, so consumers' translation
// units do not depend on them.
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include "cnnviz/errors.hpp"

namespace cnnviz {

namespace detail {

std::vector<std::string> load_labels(const std::string& source, const char* package_dir) {
  // The same refusal as detail::check_path (cnnviz/detail/paths.hpp), without torch.h here.
  TORCH_CHECK_VALUE(source.find('\0') == std::string::npos, "cnnviz: load_labels: the path contains a NUL byte; "
                    "refusing it rather than using the part before it");
  std::string path = source;
  if (source == "imagenet" || source == "cifar10") {
    std::vector<std::string> dirs;
    if (const char* env = std::getenv("CNNVIZ_LABELS_DIR")) dirs.emplace_back(env);
    if (package_dir) dirs.emplace_back(package_dir);
    dirs.emplace_back(CNNVIZ_LABELS_INSTALL_DIR);
    dirs.emplace_back(CNNVIZ_LABELS_SOURCE_DIR);
    std::string tried;
    path.clear();
    for (const auto& dir : dirs) {
      std::string candidate = dir + "/" + source + "_classes.txt";
      if (std::ifstream(candidate).good()) {
        path = candidate;
        break;
      }
      tried += " '" + candidate + "'";
    }
    if (path.empty())
      throw FileNotFoundError(detail::concat("cnnviz: label set '", source, "' not found (tried", tried,
                                             "); set CNNVIZ_LABELS_DIR to the folder holding ", source,
                                             "_classes.txt"));
  }
  errno = 0;
  std::ifstream in(path);
  if (!in.good())
    throw_file_error(errno ? errno : ENOENT, detail::concat("cnnviz: cannot read labels file '", path, "'"));
  std::vector<std::string> labels;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  return labels;
}

}  // namespace detail
}  // namespace cnnviz
