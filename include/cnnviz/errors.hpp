#pragma once
// cnnviz's own exception types, all deriving from the standard ones.
//
// Argument checks throw LibTorch's c10::ValueError / c10::IndexError (std::exception
// subclasses, std::invalid_argument-like in meaning); their what() carries a C++ backtrace,
// e.what_without_backtrace() the message alone. File errors are std::system_error with the
// errno, so a missing file is the same type (FileNotFoundError) from every loader:
// load_image, load_labels, ScriptModel::load.

#include <cerrno>
#include <sstream>
#include <string>
#include <system_error>

namespace cnnviz {

/// A file that cannot be read or written: code() holds the errno (generic category).
class FileError : public std::system_error {
 public:
  FileError(int err, const std::string& what) : std::system_error(err, std::generic_category(), what) {}
};

/// A file that does not exist (errno ENOENT); Python sees FileNotFoundError.
class FileNotFoundError : public FileError {
 public:
  explicit FileNotFoundError(const std::string& what) : FileError(ENOENT, what) {}
};

/// Throws FileNotFoundError for ENOENT, FileError otherwise.
[[noreturn]] inline void throw_file_error(int err, const std::string& what) {
  if (err == ENOENT) throw FileNotFoundError(what);
  throw FileError(err, what);
}

namespace detail {
/// The arguments streamed into one string.
template <class... A>
std::string concat(const A&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

}  // namespace cnnviz
