// Decoding and encoding with stb_image / stb_image_write. The implementations come from
// the system's libstb (so the decoder gets the distribution's security fixes); this is the
// only library file that includes the stb headers. The checks made before stb sees the
// bytes are in stb_decode.hpp.

#include <torch/torch.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include <stb_image.h>
#include <stb_image_write.h>

#include "cnnviz/detail/finite.hpp"
#include "cnnviz/detail/image.hpp"
#include "cnnviz/detail/paths.hpp"
#include "cnnviz/errors.hpp"
#include "cnnviz/image.hpp"
#include "stb_decode.hpp"

namespace cnnviz {
namespace {

std::string describe(const std::string& source) {
  return source.empty() ? std::string("image data") : "'" + source + "'";
}

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw_file_error(err, what);  // the loaders' one file error type (cnnviz/errors.hpp)
}

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a named pipe";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

/// Reads an image file whole, after checks that cost nothing: only regular files (a named
/// pipe without a writer would block, /dev/zero never ends; O_NONBLOCK lets open() return
/// for both), and only after the first bytes show an image signature (a large non-image
/// file is refused without reading it).
std::vector<uint8_t> read_file(const std::string& path) {
  detail::check_path(path, "load_image");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) throw_errno(errno, "cnnviz: cannot open '" + path + "'");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(errno, "cnnviz: cannot read '" + path + "'");
  if (S_ISDIR(st.st_mode)) throw_errno(EISDIR, "cnnviz: cannot read '" + path + "'");
  TORCH_CHECK_VALUE(S_ISREG(st.st_mode), "cnnviz: cannot decode '", path, "': it is ", file_kind(st.st_mode),
                    ", not an image file");
  TORCH_CHECK_VALUE(st.st_size < INT_MAX, "cnnviz: cannot decode '", path, "': the file is too large (",
                    st.st_size, " bytes)");
  auto read_into = [&](uint8_t* dst, size_t want) {
    size_t have = 0;
    while (have < want) {
      const ssize_t got = ::read(fd, dst + have, want - have);
      if (got < 0) {
        if (errno == EINTR) continue;
        throw_errno(errno, "cnnviz: cannot read '" + path + "'");
      }
      if (got == 0) break;  // the file shrank meanwhile
      have += static_cast<size_t>(got);
    }
    return have;
  };
  // The signature first, so that a large non-image costs a 16-byte read, not its size.
  uint8_t head[16];
  const size_t head_size = read_into(head, std::min<size_t>(sizeof(head), static_cast<size_t>(st.st_size)));
  TORCH_CHECK_VALUE(head_size < 8 || stb_decode::sniff(head, head_size) != stb_decode::Format::unknown,
                    "cnnviz: cannot decode '", path, "': not a JPEG, PNG, BMP or GIF image (starts with ",
                    stb_decode::first_bytes(head, head_size), ")");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  std::copy(head, head + head_size, bytes.begin());
  const size_t rest = head_size == sizeof(head) ? read_into(bytes.data() + head_size, bytes.size() - head_size) : 0;
  bytes.resize(head_size + rest);
  return bytes;
}

std::string lower_extension(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot + 1);
  for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext;
}

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

}  // namespace

torch::Tensor decode_image(const uint8_t* data, size_t size, const DecodeOptions& options,
                           const std::string& source) {
  TORCH_CHECK_VALUE(options.max_side() > 0 && options.max_pixels() > 0, "cnnviz: decode limits must be positive");
  TORCH_CHECK_VALUE(data != nullptr || size == 0, "cnnviz: cannot decode ", describe(source), ": no data");
  auto d = stb_decode::decode(data, size, options.max_side(), options.max_pixels());
  TORCH_CHECK_VALUE(d.pixels != nullptr, "cnnviz: cannot decode ", describe(source), ": ", d.error);
  // The tensor takes over stb's buffer: no copy.
  return torch::from_blob(d.pixels, {d.height, d.width, 3}, [](void* p) { stbi_image_free(p); },
                          torch::TensorOptions().dtype(torch::kUInt8));
}

torch::Tensor decode_image(const torch::Tensor& bytes, const DecodeOptions& options) {
  TORCH_CHECK_VALUE(bytes.defined() && bytes.scalar_type() == torch::kUInt8 && bytes.dim() == 1,
                    "cnnviz: decode_image takes the encoded bytes as a 1-D uint8 tensor");
  auto b = bytes.cpu().contiguous();
  return decode_image(b.data_ptr<uint8_t>(), static_cast<size_t>(b.numel()), options);
}

torch::Tensor load_image(const std::string& path, const DecodeOptions& options) {
  auto bytes = read_file(path);
  return decode_image(bytes.data(), bytes.size(), options, path);
}

std::vector<uint8_t> encode_image(const torch::Tensor& image, const std::string& format, int quality) {
  std::string fmt = format;
  for (auto& ch : fmt) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  TORCH_CHECK_VALUE(fmt == "png" || fmt == "jpeg" || fmt == "jpg" || fmt == "bmp", "cnnviz: cannot encode as '",
                    format, "': use png, jpeg (jpg) or bmp");
  TORCH_CHECK_VALUE(quality >= 1 && quality <= 100, "cnnviz: JPEG quality must be in [1, 100], got ", quality);
  TORCH_CHECK_VALUE(image.defined() && (image.dim() == 2 || image.dim() == 3), "cnnviz: encode_image takes an image "
                    "(H, W) or (H, W, C), got ", image.defined() ? image.sizes() : torch::IntArrayRef{});
  auto t = image.dim() == 2 ? image.unsqueeze(-1) : image;
  const int64_t c = t.size(2);
  TORCH_CHECK_VALUE(c == 1 || c == 3 || c == 4, "cnnviz: encode_image: expected 1, 3 or 4 channels last, got shape ",
                    image.sizes());
  TORCH_CHECK_VALUE(t.size(0) > 0 && t.size(1) > 0, "cnnviz: encode_image: the image is empty, shape ", image.sizes());
  TORCH_CHECK_VALUE(t.size(0) <= 65535 && t.size(1) <= 65535, "cnnviz: encode_image: the image is too large, shape ",
                    image.sizes());
  TORCH_CHECK_VALUE(t.scalar_type() == torch::kUInt8 || t.is_floating_point(), "cnnviz: encode_image takes uint8, "
                    "or floating point in [0, 1], got ", t.scalar_type());
  t = t.detach().cpu();
  if (t.is_floating_point()) {
    TORCH_CHECK_VALUE(detail::all_finite(t), "cnnviz: encode_image: the image contains NaN or "
                      "infinite values");
    t = detail::to_uint8(t);
  }
  t = t.contiguous();
  const int h = static_cast<int>(t.size(0)), w = static_cast<int>(t.size(1)), n = static_cast<int>(c);
  const void* px = t.data_ptr<uint8_t>();
  std::vector<uint8_t> out;
  int ok = 0;
  if (fmt == "png") ok = stbi_write_png_to_func(append_bytes, &out, w, h, n, px, w * n);
  else if (fmt == "bmp") ok = stbi_write_bmp_to_func(append_bytes, &out, w, h, n, px);
  else ok = stbi_write_jpg_to_func(append_bytes, &out, w, h, n, px, quality);
  TORCH_CHECK(ok && !out.empty(), "cnnviz: encoding a ", w, "x", h, " image as ", fmt, " failed");
  return out;
}

void save_image(const torch::Tensor& image, const std::string& path, int quality) {
  detail::check_path(path, "save_image");
  const std::string ext = lower_extension(path);
  TORCH_CHECK_VALUE(ext == "png" || ext == "jpg" || ext == "jpeg" || ext == "bmp", "cnnviz: cannot save '", path,
                    "': unknown extension", ext.empty() ? std::string() : " '." + ext + "'",
                    " (use .png, .jpg, .jpeg or .bmp)");
  const auto bytes = encode_image(image, ext, quality);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw_errno(errno, "cnnviz: cannot write '" + path + "'");
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int write_errno = errno;
  const bool closed = std::fclose(f) == 0;
  if (written != bytes.size()) throw_errno(write_errno ? write_errno : EIO, "cnnviz: cannot write '" + path + "'");
  if (!closed) throw_errno(errno, "cnnviz: cannot write '" + path + "'");
}

}  // namespace cnnviz
