#pragma once
// The decode sequence around stb_image, free of torch so that the fuzz target
// (tests/fuzz/fuzz_decode.cpp) can build it, and stb, with sanitizers. Included by
// src/image_codec.cpp only; the includer provides the stb_image declarations (or the
// implementation).
//
// The decoder reads untrusted bytes. Before stb allocates anything, the format is
// recognised by its signature (only JPEG, PNG, BMP and GIF: stb's other loaders, TGA above
// all, accept nearly any bytes), the declared dimensions are read from the header and
// bounded, BMP and GIF files are checked to be complete (stb pads truncated ones with
// zeros instead of failing; so does its JPEG loader when entropy-coded data ends early,
// which is caught by decoding a second time with other bytes where the data ends), JPEG
// scans are checked to use defined Huffman tables, and the declared size is capped by what
// the file's compressed data can possibly hold (deflate expands at most 1032:1, an LZW code
// yields at most 4096 pixels, a JPEG block needs at least one bit): a 35-byte file cannot
// make the decoder fill a gigabyte.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace cnnviz {
namespace stb_decode {

enum class Format { unknown, png, jpeg, bmp, gif };

inline const char* format_name(Format f) {
  switch (f) {
    case Format::png: return "PNG";
    case Format::jpeg: return "JPEG";
    case Format::bmp: return "BMP";
    case Format::gif: return "GIF";
    default: return "unknown";
  }
}

inline Format sniff(const uint8_t* d, size_t n) {
  static const uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (n >= 8 && std::memcmp(d, png, 8) == 0) return Format::png;
  if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff) return Format::jpeg;
  if (n >= 2 && d[0] == 'B' && d[1] == 'M') return Format::bmp;
  if (n >= 6 && (std::memcmp(d, "GIF87a", 6) == 0 || std::memcmp(d, "GIF89a", 6) == 0)) return Format::gif;
  return Format::unknown;
}

inline std::string first_bytes(const uint8_t* d, size_t n) {
  std::ostringstream os;
  os << std::hex;
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i)
    os << (i ? " " : "") << static_cast<int>(d[i] >> 4) << static_cast<int>(d[i] & 15);
  return os.str();
}

// stb's reason, made printable: some reasons quote bytes of the file ("XXXX PNG chunk not
// known"), which must not reach an error message (Python needs valid UTF-8).
inline std::string stb_reason() {
  const char* r = stbi_failure_reason();
  if (!r) return "unknown reason";
  std::string out;
  char hex[8];
  for (; *r && out.size() < 200; ++r) {
    const auto ch = static_cast<unsigned char>(*r);
    if (ch >= 0x20 && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      std::snprintf(hex, sizeof(hex), "\\x%02x", ch);
      out += hex;
    }
  }
  return out;
}

inline uint32_t le16(const uint8_t* p) { return p[0] | (p[1] << 8); }
inline uint32_t be16(const uint8_t* p) { return (p[0] << 8) | p[1]; }
inline uint32_t be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
}
inline uint32_t le32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// The dimensions a header declares, read here rather than by stb so that huge ones are
// reported as such (stbi_info refuses them with "unknown image type"). {0, 0} if not found.
inline std::pair<int64_t, int64_t> declared_size(Format f, const uint8_t* d, size_t n) {
  if (f == Format::png && n >= 24) return {be32(d + 16), be32(d + 20)};
  if (f == Format::gif && n >= 10) return {le16(d + 6), le16(d + 8)};
  if (f == Format::bmp && n >= 26) {
    if (le32(d + 14) == 12) return {le16(d + 18), le16(d + 20)};
    return {std::llabs(static_cast<int32_t>(le32(d + 18))),
            std::llabs(static_cast<int32_t>(le32(d + 22)))};
  }
  if (f == Format::jpeg) {
    size_t pos = 2;
    while (pos + 4 <= n && d[pos] == 0xff) {
      const uint8_t marker = d[pos + 1];
      if (marker == 0xff) {  // fill byte
        ++pos;
        continue;
      }
      const bool sof = marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
      if (sof) return pos + 9 <= n ? std::pair<int64_t, int64_t>{be16(d + pos + 7), be16(d + pos + 5)}
                                   : std::pair<int64_t, int64_t>{0, 0};
      if (marker == 0xda) break;  // scan data before a frame header: let stb complain
      pos += 2 + be16(d + pos + 2);
    }
  }
  return {0, 0};
}

// An uncompressed (or bitfield) BMP must hold offset + stride * |height| bytes.
// Returns an empty string when complete, else the reason.
inline std::string bmp_problem(const uint8_t* d, size_t n) {
  if (n < 26) return "truncated BMP header";
  const uint64_t offset = le32(d + 10);
  const uint32_t header = le32(d + 14);
  uint64_t width, height, bpp, compression = 0;
  if (header == 12) {
    width = le16(d + 18);
    height = le16(d + 20);
    bpp = le16(d + 24);
  } else {
    if (n < 34) return "truncated BMP header";
    width = static_cast<uint64_t>(std::llabs(static_cast<int32_t>(le32(d + 18))));
    height = static_cast<uint64_t>(std::llabs(static_cast<int32_t>(le32(d + 22))));
    bpp = le16(d + 28);
    compression = le32(d + 30);
  }
  if (compression != 0 && compression != 3) return "";  // RLE and others: stb decides
  const uint64_t stride = ((width * bpp + 31) / 32) * 4;
  // offset + stride * height > n, written so that it cannot overflow.
  if (offset > n || (height > 0 && stride > (n - offset) / height)) return "truncated BMP pixel data";
  return "";
}

// Walks a GIF's blocks up to the end of the first image's data; `data_bytes` is the size of
// that image's LZW data.
inline std::string gif_problem(const uint8_t* d, size_t n, size_t& data_bytes) {
  data_bytes = 0;
  auto skip_sub_blocks = [&](size_t& pos, size_t* total) {
    while (pos < n) {
      const size_t len = d[pos++];
      if (len == 0) return true;
      pos += len;
      if (total) *total += len;
    }
    return false;
  };
  if (n < 13) return "truncated GIF header";
  size_t pos = 13;
  if (d[10] & 0x80) pos += 3u << ((d[10] & 7) + 1);
  while (pos < n) {
    const uint8_t block = d[pos];
    if (block == 0x21) {  // extension: label, then sub-blocks
      pos += 2;
      if (!skip_sub_blocks(pos, nullptr)) break;
    } else if (block == 0x2c) {  // image descriptor, local color table, LZW code size, data
      if (pos + 10 > n) break;
      const uint8_t packed = d[pos + 9];
      pos += 10;
      if (packed & 0x80) pos += 3u << ((packed & 7) + 1);
      pos += 1;
      if (!skip_sub_blocks(pos, &data_bytes)) return "truncated GIF image data";
      return data_bytes == 0 ? "GIF without pixel data (its image has no LZW data)" : "";
    } else if (block == 0x3b) {
      return "GIF without an image";
    } else {
      return "corrupt GIF block";
    }
  }
  return "truncated GIF";
}

// Walks a PNG's chunks: the total of the image data (IDAT) and the bits per pixel from the
// header. Empty IDAT chunks are legal but make stb call memcpy(NULL, ..., 0) (undefined
// behaviour): `drop_empty` is set when a copy without them should be decoded instead.
struct PngInfo {
  uint64_t idat_bytes = 0;
  uint64_t bits_per_pixel = 0;
  bool drop_empty = false;
};
inline std::string png_problem(const uint8_t* d, size_t n, PngInfo& info) {
  size_t pos = 8;
  bool header = false;
  while (pos + 8 <= n) {
    const uint64_t len = be32(d + pos);
    const uint32_t type = be32(d + pos + 4);
    if (len > n - pos - 8) break;  // truncated chunk: stb reports it
    if (type == 0x49484452u && len >= 13) {  // IHDR: depth, colour type
      const uint64_t depth = d[pos + 16], colour = d[pos + 17];
      const uint64_t channels = colour == 0 || colour == 3 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : colour == 6 ? 4 : 0;
      info.bits_per_pixel = depth * channels;
      header = true;
    } else if (type == 0x49444154u) {  // IDAT
      info.idat_bytes += len;
      if (len == 0) info.drop_empty = true;
    } else if (type == 0x49454e44u) {  // IEND
      break;
    }
    pos += 12 + len;
  }
  if (header && info.idat_bytes == 0) return "PNG without pixel data (no image data chunk)";
  return "";
}

// The PNG without its empty IDAT chunks (see PngInfo).
inline std::vector<uint8_t> png_without_empty_idat(const uint8_t* d, size_t n) {
  std::vector<uint8_t> out(d, d + 8);
  size_t pos = 8;
  while (pos + 8 <= n) {
    const uint64_t len = be32(d + pos);
    const size_t end = len > n - pos - 8 || n - pos - 8 - len < 4 ? n : pos + 12 + static_cast<size_t>(len);
    if (!(len == 0 && be32(d + pos + 4) == 0x49444154u)) out.insert(out.end(), d + pos, d + end);
    pos = end;
  }
  out.insert(out.end(), d + pos, d + n);
  return out;
}

// What the JPEG walk learns besides problems: the scans' entropy-coded bytes, and where the
// last scan's data ends (the offset of the marker after it, or the file size).
struct JpegInfo {
  uint64_t scans = 0;
  uint64_t entropy_bytes = 0;
  size_t last_scan_end = 0;
};

// Checks a JPEG's Huffman tables where stb lacks checks that the fuzz target showed to
// matter: a table may have at most 256 codes (stb writes past its arrays otherwise), and a
// scan may use only tables defined before it (stb decodes with uninitialized ones
// otherwise). The walk follows stb's own reading of the stream (stbi__decode_jpeg_header,
// stbi__decode_jpeg_image): junk skipped before the frame header, zeros read past the end,
// entropy-coded data ended by the first marker other than a restart. Where stb would fail
// anyway the walk may stop, or go on and be stricter; it must never skip what stb reads.
inline std::string jpeg_problem(const uint8_t* d, size_t n, JpegInfo& info) {
  constexpr int kNone = 0xff;  // stb's STBI__MARKER_none
  auto at = [&](size_t i) -> unsigned { return i < n ? d[i] : 0; };
  auto be = [&](size_t i) { return (at(i) << 8) | at(i + 1); };
  size_t pos = 2;  // after SOI
  auto get_marker = [&]() -> int {
    if (at(pos++) != 0xff) return kNone;
    unsigned x = 0xff;
    while (x == 0xff && pos <= n) x = at(pos++);
    return static_cast<int>(x);
  };
  unsigned dc = 0, ac = 0;  // bit k: table k defined
  // One marker segment as stb processes it; false where stb fails.
  auto process_marker = [&](int m, std::string& problem) {
    const size_t start = pos;
    const unsigned len = be(pos);
    if (m == 0xc4) {  // DHT: tables one after another while the length lasts
      long left = static_cast<long>(len) - 2;
      size_t p = start + 2;
      while (left > 0) {
        const unsigned q = at(p), cls = q >> 4, id = q & 15;
        if (cls > 1 || id > 3) return false;
        size_t count = 0;
        for (size_t i = 1; i <= 16; ++i) count += at(p + i);
        if (count > 256) {
          problem = "corrupt JPEG (a Huffman table with more than 256 codes)";
          return false;
        }
        (cls == 0 ? dc : ac) |= 1u << id;
        p += 17 + count;
        left -= static_cast<long>(17 + count);
      }
      if (left != 0) return false;
    } else if (!(m == 0xdb || m == 0xdd || m == 0xc0 || m == 0xc1 || m == 0xc2 || (m >= 0xe0 && m <= 0xef) ||
                 m == 0xfe)) {
      return false;  // stb: "unknown marker" (or a marker out of place)
    }
    pos = start + len;  // where stb is after a segment it accepts
    return pos <= n;
  };

  std::string problem;
  int m = get_marker();
  bool first = true;
  while (m != 0xc0 && m != 0xc1 && m != 0xc2) {  // up to the frame header
    if (m == kNone && first) return "";
    if (m != kNone && !process_marker(m, problem)) return problem;
    first = false;
    m = get_marker();
    while (m == kNone) {
      if (pos >= n) return "";
      m = get_marker();
    }
  }
  const bool progressive = m == 0xc2;
  if (!process_marker(m, problem)) return problem;
  for (m = get_marker(); m != 0xd9; m = get_marker()) {
    if (m == 0xda) {  // SOS: components with their tables, then Ss, Se, Ah/Al
      const size_t ns = at(pos + 2);
      if (ns < 1 || ns > 4 || be(pos) != 6 + 2 * ns) return "";
      const unsigned ss = at(pos + 3 + 2 * ns), se = at(pos + 4 + 2 * ns), ah = at(pos + 5 + 2 * ns) >> 4;
      const bool need_dc = !progressive || (ss == 0 && ah == 0);
      const bool need_ac = !progressive || ss > 0 || se > 0;
      for (size_t i = 0; i < ns; ++i) {
        const unsigned td = at(pos + 4 + 2 * i) >> 4, ta = at(pos + 4 + 2 * i) & 15;
        if (td > 3 || ta > 3) return "";
        if ((need_dc && !(dc & (1u << td))) || (need_ac && !(ac & (1u << ta))))
          return "corrupt JPEG (a scan uses an undefined Huffman table)";
      }
      // The entropy-coded data runs to the first marker other than a restart; as in stb's bit
      // reader, a run of FF bytes followed by 00 is a data byte.
      pos += be(pos);
      const size_t data_start = std::min(pos, n);
      ++info.scans;
      for (;;) {
        while (pos < n && d[pos] != 0xff) ++pos;
        size_t q = pos;
        while (q < n && d[q] == 0xff) ++q;
        if (q >= n) {
          info.entropy_bytes += n - data_start;
          info.last_scan_end = n;
          return "";
        }
        if (d[q] != 0 && !(d[q] >= 0xd0 && d[q] <= 0xd7)) break;
        pos = q + 1;
      }
      info.entropy_bytes += pos - data_start;
      info.last_scan_end = pos;
    } else if (m == 0xdc) {  // DNL
      pos += 4;
    } else if (m == kNone || !process_marker(m, problem)) {
      return problem;
    }
  }
  return "";
}

/// The result of decode(): stb's pixels (RGB, free with stbi_image_free) or an error.
struct Decoded {
  uint8_t* pixels = nullptr;
  int width = 0, height = 0;
  std::string error;  ///< why the data was refused, when pixels is null
};

/// Checks and decodes: signature, declared size within the limits, completeness, stb.
inline Decoded decode(const uint8_t* data, size_t size, int64_t max_side, int64_t max_pixels) {
  Decoded out;
  auto fail = [&](std::string why) {
    out.error = std::move(why);
    return out;
  };
  if (size == 0) return fail("it is empty (0 bytes)");
  if (size >= INT_MAX) return fail("too large (" + std::to_string(size) + " bytes)");
  const Format format = sniff(data, size);
  if (format == Format::unknown)
    return fail("not a JPEG, PNG, BMP or GIF image (starts with " + first_bytes(data, size) + ")");
  const std::string name = format_name(format);
  auto within_limits = [&](int64_t w, int64_t h) {
    return w <= max_side && h <= max_side &&
           static_cast<double>(w) * static_cast<double>(h) <= static_cast<double>(max_pixels);
  };
  auto beyond = [&](int64_t w, int64_t h) {
    return fail("the " + name + " declares " + std::to_string(w) + "x" + std::to_string(h) +
                " pixels, beyond the limits (" + std::to_string(max_side) + " per side, " +
                std::to_string(max_pixels) + " in all; see DecodeOptions)");
  };
  const auto declared = declared_size(format, data, size);
  if (!within_limits(declared.first, declared.second)) return beyond(declared.first, declared.second);
  // Before stb looks at the data at all: stbi_info already parses JPEG tables.
  std::string problem;
  size_t gif_bytes = 0;
  PngInfo png;
  JpegInfo jpeg;
  if (format == Format::bmp) problem = bmp_problem(data, size);
  if (format == Format::gif) problem = gif_problem(data, size, gif_bytes);
  if (format == Format::png) problem = png_problem(data, size, png);
  if (format == Format::jpeg) {
    problem = jpeg_problem(data, size, jpeg);
    if (problem.empty() && jpeg.scans == 0 && declared.first > 0)
      problem = "JPEG without pixel data (no scan)";
  }
  if (!problem.empty()) return fail(problem);
  // The most pixels the compressed data can hold (declared sizes of 0 are left to stb).
  const double declared_pixels = static_cast<double>(declared.first) * static_cast<double>(declared.second);
  double most = declared_pixels;
  if (format == Format::gif) most = 4096.0 * static_cast<double>(gif_bytes);
  if (format == Format::jpeg) most = 8192.0 * static_cast<double>(std::max<uint64_t>(jpeg.entropy_bytes, 1));
  if (format == Format::png && png.bits_per_pixel > 0)
    most = (1032.0 * static_cast<double>(png.idat_bytes) + 1032.0) * 8.0 / static_cast<double>(png.bits_per_pixel);
  if (declared_pixels > most)
    return fail("the " + name + " declares " + std::to_string(declared.first) + "x" +
                std::to_string(declared.second) + " pixels, more than its " + std::to_string(size) +
                " bytes can encode (truncated, or a decompression bomb)");
  std::vector<uint8_t> copy;
  if (png.drop_empty) {
    copy = png_without_empty_idat(data, size);
    data = copy.data();
    size = copy.size();
  }
  const int len = static_cast<int>(size);
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    return fail("corrupt " + name + " header (" + stb_reason() + ")");
  if (w <= 0 || h <= 0)
    return fail("the " + name + " declares an empty image (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  if (!within_limits(w, h)) return beyond(w, h);
  int dw = 0, dh = 0, dc = 0;
  uint8_t* pixels = stbi_load_from_memory(data, len, &dw, &dh, &dc, 3);
  if (!pixels) return fail("truncated or corrupt " + name + " (" + stb_reason() + ")");
  if (dw != w || dh != h) {
    stbi_image_free(pixels);
    return fail("corrupt " + name + " (decoded size differs from the header)");
  }
  if (format == Format::jpeg) {
    // stb pads entropy-coded data that ends early with zeros. Decoded again with other bytes
    // where the last scan's data ends, a complete file gives the same pixels (stb skips bytes
    // before a marker); a truncated one reads them as image data.
    std::vector<uint8_t> probe(data, data + jpeg.last_scan_end);
    probe.insert(probe.end(), 32, 0xa5);
    probe.insert(probe.end(), data + jpeg.last_scan_end, data + size);
    int pw = 0, ph = 0, pc = 0;
    uint8_t* again = stbi_load_from_memory(probe.data(), static_cast<int>(probe.size()), &pw, &ph, &pc, 3);
    const bool same = again && pw == w && ph == h &&
                      std::memcmp(again, pixels, static_cast<size_t>(w) * static_cast<size_t>(h) * 3) == 0;
    if (again) stbi_image_free(again);
    if (!same) {
      stbi_image_free(pixels);
      return fail("truncated JPEG (its entropy-coded data ends before the image is complete)");
    }
  }
  out.pixels = pixels;
  out.width = w;
  out.height = h;
  return out;
}

}  // namespace stb_decode
}  // namespace cnnviz
