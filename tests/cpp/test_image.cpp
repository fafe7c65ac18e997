#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <system_error>

#include "cnnviz/image.hpp"
#include "cnnviz/xtensor.hpp"
#include "paths.hpp"

namespace fs = std::filesystem;

namespace {

// The sample-data folder, or "" when it is missing (tests that need it then skip).
std::string data_dir() {
  const char* env = std::getenv("CNNVIZ_DATA");
  fs::path dir = env ? fs::path(env) : fs::path(cnnviz_test::source_dir()) / ".." / "shared" / "data";
  return fs::is_directory(dir / "images") ? dir.string() : "";
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("cnnviz_test_image_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

torch::Tensor decode(const std::vector<uint8_t>& b) { return cnnviz::decode_image(b.data(), b.size()); }

// A smooth color test image (H, W, 3) uint8 (JPEG-friendly).
torch::Tensor gradient_image(int64_t h, int64_t w) {
  auto y = torch::linspace(0, 1, h).view({h, 1}).expand({h, w});
  auto x = torch::linspace(0, 1, w).view({1, w}).expand({h, w});
  return cnnviz::as_image_tensor(torch::stack({x, y, (x + y) / 2}, 2));
}

// A 4x3 GIF (PIL-written): blue at (0, 0), green at (3, 2), red elsewhere.
const std::vector<uint8_t> kGif = {
    0x47, 0x49, 0x46, 0x38, 0x37, 0x61, 0x04, 0x00, 0x03, 0x00, 0x81, 0x00, 0x00, 0x00, 0xff, 0x00,
    0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
    0x03, 0x00, 0x00, 0x08, 0x09, 0x00, 0x05, 0x04, 0x18, 0x48, 0xb0, 0x20, 0x80, 0x80, 0x00, 0x3b};

}  // namespace

TEST_CASE("image: PNG and BMP round trips are exact, JPEG is close") {
  auto img = gradient_image(37, 53);
  img.index_put_({5, 7}, torch::tensor({255, 0, 17}, torch::kUInt8));
  for (const char* fmt : {"png", "bmp"}) {
    auto bytes = cnnviz::encode_image(img, fmt);
    CHECK(torch::equal(decode(bytes), img));
  }
  auto jpeg = decode(cnnviz::encode_image(gradient_image(64, 48), "jpeg", 95));
  CHECK(jpeg.sizes() == torch::IntArrayRef({64, 48, 3}));
  CHECK((jpeg.to(torch::kFloat) - gradient_image(64, 48).to(torch::kFloat)).abs().mean().item<double>() < 2.0);

  TempDir tmp;
  cnnviz::save_image(img, tmp.file("a.PNG"));
  CHECK(torch::equal(cnnviz::load_image(tmp.file("a.PNG")), img));
  cnnviz::save_image(img, tmp.file("a.bmp"));
  CHECK(torch::equal(cnnviz::load_image(tmp.file("a.bmp")), img));
  cnnviz::save_image(gradient_image(64, 48), tmp.file("a.jpeg"), 90);
  CHECK(cnnviz::load_image(tmp.file("a.jpeg")).sizes() == torch::IntArrayRef({64, 48, 3}));
}

TEST_CASE("image: gray, RGBA and float images are converted to RGB") {
  auto gray = torch::arange(0, 240, 20, torch::kUInt8).view({3, 4});
  auto rgb = decode(cnnviz::encode_image(gray, "png"));  // written as a one-channel PNG
  CHECK(torch::equal(rgb, gray.unsqueeze(-1).expand({3, 4, 3})));
  auto rgba = torch::cat({gradient_image(5, 6), torch::full({5, 6, 1}, 7, torch::kUInt8)}, 2);
  CHECK(torch::equal(decode(cnnviz::encode_image(rgba, "png")), gradient_image(5, 6)));
  // Floats in [0, 1] are scaled and rounded; alpha is dropped by as_image_tensor.
  auto f = torch::tensor({0.0, 0.5, 1.0, 2.0}).view({1, 4, 1});
  CHECK(torch::equal(cnnviz::as_image_tensor(f).select(2, 0), torch::tensor({0, 128, 255, 255}, torch::kUInt8).view({1, 4})));
  CHECK(torch::equal(cnnviz::as_image_tensor(rgba), gradient_image(5, 6)));
}

TEST_CASE("image: GIF gives the first frame") {
  auto img = decode(kGif);
  REQUIRE(img.sizes() == torch::IntArrayRef({3, 4, 3}));
  CHECK(torch::equal(img[0][0], torch::tensor({0, 0, 255}, torch::kUInt8)));
  CHECK(torch::equal(img[2][3], torch::tensor({0, 255, 0}, torch::kUInt8)));
  CHECK(torch::equal(img[1][1], torch::tensor({255, 0, 0}, torch::kUInt8)));
}

TEST_CASE("image: real photos decode") {
  auto dir = data_dir();
  if (dir.empty()) {
    MESSAGE("sample data not found (set CNNVIZ_DATA): skipping the real-photo checks");
    return;
  }
  auto png = cnnviz::load_image(dir + "/images/astronaut.png");
  CHECK(png.sizes() == torch::IntArrayRef({512, 512, 3}));
  CHECK((png.scalar_type() == torch::kUInt8));
  auto jpg = cnnviz::load_image(dir + "/images/dog.jpg");
  CHECK(jpg.sizes() == torch::IntArrayRef({576, 768, 3}));
  // Decoding from memory gives the same pixels as from the file.
  CHECK(torch::equal(decode(read_bytes(dir + "/images/dog.jpg")), jpg));
  auto bytes = read_bytes(dir + "/images/coffee.png");
  auto t = torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  CHECK(torch::equal(cnnviz::decode_image(t), cnnviz::load_image(dir + "/images/coffee.png")));
}

TEST_CASE("image: bad files give errors naming the file and the reason") {
  TempDir tmp;
  // Missing or unreadable files: std::system_error with the errno.
  const std::string missing = tmp.file("missing.png");
  try {
    cnnviz::load_image(missing);
    FAIL("no error");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK(std::string(e.what()).find(missing) != std::string::npos);
  }
  CHECK_THROWS_AS(cnnviz::load_image(tmp.path.string()), std::system_error);  // a directory
  CHECK_THROWS_AS(cnnviz::load_image(""), c10::ValueError);

  auto write = [&](const std::string& name, const std::vector<uint8_t>& b) {
    std::ofstream(tmp.file(name), std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                                          static_cast<std::streamsize>(b.size()));
    return tmp.file(name);
  };
  CHECK_THROWS_WITH_AS(cnnviz::load_image(write("empty.png", {})), doctest::Contains("empty.png': it is empty"),
                       c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::load_image(write("text.jpg", {'h', 'e', 'l', 'l', 'o'})),
                       doctest::Contains("not a JPEG, PNG, BMP or GIF"), c10::ValueError);

  auto img = gradient_image(40, 30);
  for (const char* fmt : {"png", "jpeg", "bmp"}) {
    auto full = cnnviz::encode_image(img, fmt);
    for (double frac : {0.05, 0.5, 0.9}) {
      std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(full.size() * frac));
      auto path = write(std::string("cut.") + fmt, cut);
      CHECK_THROWS_WITH_AS(cnnviz::load_image(path), doctest::Contains(path.c_str()), c10::ValueError);
    }
  }
  for (size_t keep : {10, 20, 30, 40, 46}) {
    std::vector<uint8_t> cut(kGif.begin(), kGif.begin() + static_cast<std::ptrdiff_t>(keep));
    CHECK_THROWS_AS(decode(cut), c10::ValueError);
  }
}

TEST_CASE("image: absurd and empty declared dimensions are refused before decoding") {
  auto png = cnnviz::encode_image(gradient_image(4, 4), "png");
  auto with_size = [&](uint32_t w, uint32_t h) {
    auto b = png;  // IHDR width and height, big-endian, at bytes 16 and 20 (stb ignores the CRC)
    for (int i = 0; i < 4; ++i) {
      b[16 + i] = static_cast<uint8_t>(w >> (24 - 8 * i));
      b[20 + i] = static_cast<uint8_t>(h >> (24 - 8 * i));
    }
    return b;
  };
  CHECK_THROWS_WITH_AS(decode(with_size(100000, 100000)), doctest::Contains("beyond the limits"), c10::ValueError);
  CHECK_THROWS_WITH_AS(decode(with_size(20000, 10)), doctest::Contains("beyond the limits"), c10::ValueError);
  CHECK_THROWS_WITH_AS(decode(with_size(16384, 16385)), doctest::Contains("beyond the limits"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::decode_image(png.data(), png.size(), cnnviz::DecodeOptions().max_pixels(15)),
                       doctest::Contains("beyond the limits"), c10::ValueError);
  CHECK_THROWS_AS(decode(with_size(0, 4)), c10::ValueError);
  // Limits are options.
  auto small = cnnviz::DecodeOptions().max_side(3);
  CHECK_THROWS_WITH_AS(cnnviz::decode_image(png.data(), png.size(), small), doctest::Contains("4x4"), c10::ValueError);
  auto bmp = cnnviz::encode_image(gradient_image(4, 4), "bmp");
  bmp[18] = 0xff;
  bmp[19] = 0xff;
  bmp[20] = 0xff;  // width 16M
  CHECK_THROWS_AS(decode(bmp), c10::ValueError);
}

TEST_CASE("image: the decoder survives mutated and truncated files (fuzz)") {
  std::mt19937 rng(1234);
  std::vector<std::vector<uint8_t>> seeds = {cnnviz::encode_image(gradient_image(24, 20), "png"),
                                             cnnviz::encode_image(gradient_image(24, 20), "jpeg", 80),
                                             cnnviz::encode_image(gradient_image(9, 7), "bmp"), kGif};
  auto dir = data_dir();
  if (!dir.empty()) seeds.push_back(read_bytes(dir + "/images/cifar10_samples/cifar10_00_3.png"));
  int decoded = 0, refused = 0;
  for (const auto& seed : seeds) {
    for (int it = 0; it < 1500; ++it) {
      auto b = seed;
      const int kind = static_cast<int>(rng() % 4);
      if (kind == 0) {
        b.resize(rng() % b.size());
      } else {
        const int flips = 1 + static_cast<int>(rng() % 8);
        for (int k = 0; k < flips; ++k) {
          // Header bytes are the interesting ones: half the flips land in the first 64.
          const size_t pos = (rng() % 2) ? rng() % std::min<size_t>(64, b.size()) : rng() % b.size();
          b[pos] = kind == 1 ? static_cast<uint8_t>(rng()) : static_cast<uint8_t>(b[pos] ^ (1u << (rng() % 8)));
        }
        if (kind == 3) b.insert(b.begin() + static_cast<std::ptrdiff_t>(rng() % b.size()), 1 + rng() % 16, 0xff);
      }
      try {
        auto img = decode(b);
        CHECK((img.dim() == 3 && img.size(2) == 3 && img.size(0) <= 16384 && img.size(1) <= 16384));
        ++decoded;
      } catch (const c10::ValueError& e) {
        // Messages stay printable ASCII even when stb quotes bytes of the file.
        const std::string msg = e.what_without_backtrace();
        CHECK(std::all_of(msg.begin(), msg.end(), [](char ch) { return ch >= 0x20 && ch < 0x7f; }));
        ++refused;
      }
    }
  }
  MESSAGE("fuzz: " << decoded << " decoded, " << refused << " refused");
  CHECK(refused > 0);
}

TEST_CASE("image: save_image errors") {
  TempDir tmp;
  auto img = gradient_image(4, 4);
  CHECK_THROWS_WITH_AS(cnnviz::save_image(img, tmp.file("a.tiff")), doctest::Contains("unknown extension '.tiff'"),
                       c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::save_image(img, tmp.file("noext")), doctest::Contains("unknown extension"),
                       c10::ValueError);
  CHECK_THROWS_AS(cnnviz::save_image(img, tmp.file("no/such/dir/a.png")), std::system_error);
  CHECK_THROWS_AS(cnnviz::save_image(torch::zeros({0, 4, 3}, torch::kUInt8), tmp.file("a.png")), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::save_image(torch::zeros({4, 4, 2}, torch::kUInt8), tmp.file("a.png")), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::save_image(torch::zeros({4, 4, 3}, torch::kInt32), tmp.file("a.png")), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::save_image(torch::full({4, 4}, NAN), tmp.file("a.png")), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::encode_image(img, "jpeg", 0), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::encode_image(img, "gif"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::decode_image(torch::zeros({2, 2}, torch::kUInt8)), c10::ValueError);
}

// Collects TORCH_WARN messages while alive.
struct WarningCollector : c10::WarningHandler {
  std::vector<std::string> messages;
  c10::Warning::WarningHandlerGuard guard{this};
  void process(const c10::SourceLocation&, const std::string& msg, const bool) override { messages.push_back(msg); }
};

TEST_CASE("image: preprocess warns when its default size upscales, never for a given size") {
  auto small = gradient_image(32, 32);
  {
    WarningCollector w;
    auto x = cnnviz::preprocess(small);  // the default 224 x 224: a 7x upscale nobody asked for
    CHECK(x.sizes() == torch::IntArrayRef({1, 3, 224, 224}));
    REQUIRE(w.messages.size() == 1);
    CHECK(w.messages[0].find("upscales a 32x32 image to 224x224") != std::string::npos);
    CHECK(w.messages[0].find("PreprocessOptions(32)") != std::string::npos);
  }
  {
    WarningCollector w;
    cnnviz::preprocess(small, 224);                                      // asked for
    cnnviz::preprocess(small, cnnviz::PreprocessOptions().size({224, 224}));  // asked for
    cnnviz::preprocess(small, cnnviz::PreprocessOptions(32));
    cnnviz::preprocess(gradient_image(150, 200));                        // the default, under 2x
    cnnviz::preprocess(small, cnnviz::PreprocessOptions().size({}));     // keep the size
    CHECK(w.messages.empty());
  }
  CHECK_FALSE(cnnviz::PreprocessOptions().size().given());
  CHECK(cnnviz::PreprocessOptions().size().values() == std::vector<int64_t>{224, 224});
  CHECK(cnnviz::PreprocessOptions().size({}).size().given());
  CHECK(cnnviz::PreprocessOptions().size({}).size().values().empty());
  CHECK(cnnviz::PreprocessOptions(20, 30).size().values() == std::vector<int64_t>{20, 30});
}

TEST_CASE("image: preprocess and deprocess") {
  // A constant image gives (v / 255 - mean) / std per channel, at any size.
  auto img = torch::empty({30, 50, 3}, torch::kUInt8);
  img.select(2, 0).fill_(10);
  img.select(2, 1).fill_(128);
  img.select(2, 2).fill_(250);
  auto x = cnnviz::preprocess(img, {16, 24});
  REQUIRE(x.sizes() == torch::IntArrayRef({1, 3, 16, 24}));
  for (int c = 0; c < 3; ++c) {
    const double v = std::vector<double>{10, 128, 250}[c] / 255.0;
    CHECK(x[0][c].allclose(torch::full({16, 24}, (v - cnnviz::kImageNetMean[c]) / cnnviz::kImageNetStd[c]), 1e-5, 1e-5));
  }
  // Resize the shorter side, then center-crop.
  auto y = cnnviz::preprocess(gradient_image(100, 200), cnnviz::PreprocessOptions(50).resize(60));
  CHECK(y.sizes() == torch::IntArrayRef({1, 3, 50, 50}));
  auto z = cnnviz::preprocess(gradient_image(100, 200), cnnviz::PreprocessOptions().size({}).resize(60));
  CHECK(z.sizes() == torch::IntArrayRef({1, 3, 60, 120}));
  // Same size and mean 0, std 1 is a plain scaling; deprocess inverts preprocess exactly.
  auto g = gradient_image(20, 30);
  auto p = cnnviz::preprocess(g, cnnviz::PreprocessOptions(20, 30).normalization(cnnviz::Normalization::identity()));
  CHECK(p.allclose(g.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat) / 255.0));
  CHECK(torch::equal(cnnviz::deprocess(cnnviz::preprocess(g, {20, 30})), g));
  CHECK(torch::equal(cnnviz::deprocess(cnnviz::preprocess(g, {20, 30})[0]), g));
  auto c10m = cnnviz::preprocess(g, cnnviz::PreprocessOptions(20, 30).normalization(cnnviz::Normalization::cifar10()));
  CHECK(torch::equal(cnnviz::deprocess(c10m, cnnviz::Normalization::cifar10()), g));
  // Another normalization: deprocess with the same one inverts it, the default (ImageNet) does not.
  const cnnviz::Normalization half({0.5, 0.25, 0.75}, {0.5, 0.5, 0.25});
  auto xh = cnnviz::preprocess(g, cnnviz::PreprocessOptions(20, 30).normalization(half));
  auto pixels = g.permute({2, 0, 1}).to(torch::kFloat) / 255.0;
  auto expected = (pixels - torch::tensor({0.5, 0.25, 0.75}).view({3, 1, 1})) / torch::tensor({0.5, 0.5, 0.25}).view({3, 1, 1});
  CHECK(xh[0].allclose(expected.to(torch::kFloat), 1e-5, 1e-5));
  CHECK(torch::equal(cnnviz::deprocess(xh, half), g));
  CHECK_FALSE(torch::equal(cnnviz::deprocess(xh), g));
  // One value applies to every channel.
  auto one = cnnviz::preprocess(g, cnnviz::PreprocessOptions(20, 30).normalization({{0.5}, {0.25}}));
  CHECK(one[0].allclose(((pixels - 0.5) / 0.25).to(torch::kFloat), 1e-5, 1e-5));
  // Gray input gives three equal channels.
  auto gray = cnnviz::preprocess(g.select(2, 0).contiguous(), cnnviz::PreprocessOptions(20, 30).normalization({{0.5}, {0.5}}));
  CHECK(torch::equal(gray[0][0], gray[0][2]));

  CHECK_THROWS_AS(cnnviz::preprocess(g, cnnviz::PreprocessOptions(0)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::preprocess(g, cnnviz::PreprocessOptions().size({1, 2, 3})), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::preprocess(g, cnnviz::PreprocessOptions().normalization(cnnviz::Normalization().std({0.0}))),
                       doctest::Contains("std must be positive"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::preprocess(g, cnnviz::PreprocessOptions().normalization(cnnviz::Normalization().mean({0.1, 0.2}))),
                       doctest::Contains("1 or 3 values"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deprocess(xh, cnnviz::Normalization().std({1.0, -1.0, 1.0})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deprocess(xh, cnnviz::Normalization().mean({0.0, 0.0})), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::preprocess(g, cnnviz::PreprocessOptions(100).resize(50)),
                       doctest::Contains("larger than the resized image"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::preprocess(torch::rand({1, 3, 8, 8}), 8), c10::ValueError);
  // A channels-first (3, H, W) tensor: permuting it is the advice for pixels in [0, 1],
  // deprocess() for a normalized model input.
  CHECK_THROWS_WITH_AS(cnnviz::preprocess(torch::rand({3, 8, 9}), 8), doctest::Contains("permute({1, 2, 0})"),
                       c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::preprocess(torch::randn({3, 8, 9}) * 2, 8), doctest::Contains("use deprocess()"),
                       c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::preprocess(torch::zeros({3, 8, 9}, torch::kUInt8), 8),
                       doctest::Contains("permute({1, 2, 0})"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::preprocess(torch::zeros({0, 5, 3}, torch::kUInt8), 8), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::preprocess(torch::full({4, 4, 3}, NAN), 8), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deprocess(torch::rand({2, 3, 8, 8})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deprocess(torch::rand({1, 4, 8, 8})), c10::ValueError);
  // A one-channel tensor: one mean and std value, the image comes back gray.
  CHECK_THROWS_WITH_AS(cnnviz::deprocess(torch::rand({1, 1, 8, 8})), doctest::Contains("one mean and one std value"),
                       c10::ValueError);
  auto gray1 = cnnviz::deprocess(torch::full({1, 1, 2, 2}, 0.5), cnnviz::Normalization({0.25}, {0.5}));
  CHECK(torch::equal(gray1, torch::full({2, 2, 3}, 128, torch::kUInt8)));  // 0.5 * 0.5 + 0.25 = 0.5
  CHECK_THROWS_AS(cnnviz::deprocess(torch::zeros({1, 3, 8, 8}, torch::kUInt8)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deprocess(torch::full({3, 2, 2}, NAN)), c10::ValueError);
}

TEST_CASE("image: resize_image") {
  auto g = gradient_image(40, 60);
  auto r = cnnviz::resize_image(g, 20, 30);
  CHECK(r.sizes() == torch::IntArrayRef({20, 30, 3}));
  CHECK((r.scalar_type() == torch::kUInt8));
  // A constant map stays constant under any resize.
  auto m = cnnviz::resize_image(torch::full({7, 7}, 0.25), 50, 3);
  CHECK(m.sizes() == torch::IntArrayRef({50, 3}));
  CHECK(m.allclose(torch::full({50, 3}, 0.25)));
  CHECK(torch::equal(cnnviz::resize_image(g, 40, 60), g));
  CHECK_THROWS_AS(cnnviz::resize_image(g, 0, 5), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::resize_image(torch::rand({1, 1, 3, 3}), 5, 5), c10::ValueError);
}

TEST_CASE("image: colormaps match matplotlib's tables") {
  // Entry i colors [i / 256, (i + 1) / 256).
  auto centers = ((torch::arange(256, torch::kFloat) + 0.5) / 256).view({1, 256});
  auto gray = cnnviz::colormap(centers, cnnviz::ColormapOptions("gray").vmin(0.0).vmax(1.0));
  // matplotlib's gray truncates i / 255 * 255, so some entries are i - 1.
  CHECK((gray.select(2, 0).to(torch::kInt) - torch::arange(256).view({1, 256})).abs().max().item<int>() <= 1);
  auto ramp = torch::arange(256, torch::kFloat).view({1, 256});
  auto v = cnnviz::colormap(ramp);  // viridis; matplotlib: (68, 1, 84) ... (253, 231, 36)
  CHECK(torch::equal(v[0][0], torch::tensor({68, 1, 84}, torch::kUInt8)));
  CHECK(torch::equal(v[0][255], torch::tensor({253, 231, 36}, torch::kUInt8)));
  // vmin/vmax fix the range; values outside clamp.
  auto fixed = cnnviz::colormap(torch::tensor({-1.0, 0.0, 0.5, 2.0}).view({2, 2}),
                                cnnviz::ColormapOptions("gray").vmin(0.0).vmax(1.0));
  CHECK(torch::equal(fixed.select(2, 0), torch::tensor({0, 0, 128, 255}, torch::kUInt8).view({2, 2})));
  // Symmetric ranges put 0 at the middle; constant maps do not divide by zero.
  auto sym = cnnviz::colormap(torch::tensor({-2.0, 0.0, 1.0}).view({1, 3}), cnnviz::ColormapOptions("gray").symmetric(true));
  CHECK(torch::equal(sym.select(2, 0), torch::tensor({0, 128, 192}, torch::kUInt8).view({1, 3})));
  CHECK(torch::equal(cnnviz::colormap(torch::ones({3, 3}), "gray"), torch::zeros({3, 3, 3}, torch::kUInt8)));
  CHECK(cnnviz::colormap(torch::rand({1, 1, 5, 6}), "jet").sizes() == torch::IntArrayRef({5, 6, 3}));
  CHECK(cnnviz::colormap_names().size() >= 4);

  CHECK_THROWS_WITH_AS(cnnviz::colormap(ramp, "nope"), doctest::Contains("viridis"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::colormap(torch::rand({2, 3, 4})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::colormap(torch::full({2, 2}, NAN)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::colormap(torch::zeros({0, 3})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::colormap(ramp, cnnviz::ColormapOptions().vmin(1.0).vmax(0.0)), c10::ValueError);
}

TEST_CASE("image: overlay blends a resized, colored heatmap") {
  auto img = gradient_image(32, 48);
  auto heat = torch::rand({7, 7});
  CHECK(torch::equal(cnnviz::overlay(img, heat, cnnviz::OverlayOptions().alpha(0)), img));
  auto full = cnnviz::overlay(img, heat, cnnviz::OverlayOptions().alpha(1).colormap("hot"));
  CHECK(torch::equal(full, cnnviz::colormap(cnnviz::resize_image(heat, 32, 48), "hot")));
  auto half = cnnviz::overlay(img, heat, cnnviz::OverlayOptions().alpha(0.5));
  auto expected = (img.to(torch::kFloat) + cnnviz::colormap(cnnviz::resize_image(heat, 32, 48), "jet").to(torch::kFloat)) / 2;
  CHECK((half.to(torch::kFloat) - expected).abs().max().item<float>() <= 0.5f);
  CHECK_THROWS_AS(cnnviz::overlay(img, heat, cnnviz::OverlayOptions().alpha(1.5)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::overlay(img, heat, cnnviz::OverlayOptions().colormap("x")), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::overlay(img, torch::rand({2, 7, 7})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::overlay(torch::rand({3, 32, 48}), heat), c10::ValueError);
}

TEST_CASE("image: make_grid lays out images as torchvision does") {
  auto batch = torch::rand({5, 3, 4, 6});
  auto grid = cnnviz::make_grid(batch, cnnviz::GridOptions().nrow(3).padding(1).pad_value(1.0));
  // 3 columns, 2 rows, 1 pixel around every image.
  REQUIRE(grid.sizes() == torch::IntArrayRef({2 * 5 + 1, 3 * 7 + 1, 3}));
  // torchvision's save_image rounding: floor(255 x + 0.5), clamped.
  auto u8 = (batch * 255 + 0.5).floor().clamp(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1});
  CHECK(torch::equal(grid.slice(0, 1, 5).slice(1, 1, 7), u8[0]));
  CHECK(torch::equal(grid.slice(0, 6, 10).slice(1, 8, 14), u8[4]));   // row 1, column 1
  CHECK(torch::equal(grid.slice(0, 6, 10).slice(1, 15, 21), torch::full({4, 6, 3}, 255, torch::kUInt8)));  // empty cell
  CHECK(grid[0].eq(255).all().item<bool>());
  // uint8 (N, H, W, 3) batches and lists of images give the same grid.
  CHECK(torch::equal(cnnviz::make_grid(u8.contiguous(), cnnviz::GridOptions().nrow(3).padding(1).pad_value(1.0)), grid));
  std::vector<torch::Tensor> list;
  for (int i = 0; i < 5; ++i) list.push_back(u8[i]);
  CHECK(torch::equal(cnnviz::make_grid(list, cnnviz::GridOptions().nrow(3).padding(1).pad_value(1.0)), grid));
  // One image: no padding.
  CHECK(torch::equal(cnnviz::make_grid(batch.slice(0, 0, 1)), u8[0]));
  // Per-image normalization of one-channel maps, colored.
  auto maps = torch::randn({4, 1, 5, 5}) * 100;
  auto colored = cnnviz::make_grid(maps, cnnviz::GridOptions().normalize(true).scale_each(true).colormap("viridis"));
  CHECK(torch::equal(colored.slice(0, 2, 7).slice(1, 2, 7), cnnviz::colormap(maps[0][0])));

  CHECK_THROWS_AS(cnnviz::make_grid(torch::rand({2, 5, 4, 4})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::make_grid(torch::rand({3, 4, 4})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::make_grid(batch, cnnviz::GridOptions().nrow(0)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::make_grid(batch, cnnviz::GridOptions().padding(-1)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::make_grid(batch, cnnviz::GridOptions().colormap("x")), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::make_grid(std::vector<torch::Tensor>{}), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::make_grid(std::vector<torch::Tensor>{u8[0], u8[0].slice(0, 0, 2)}),
                       doctest::Contains("one size"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::make_grid(torch::full({2, 3, 4, 4}, NAN)), c10::ValueError);
}

TEST_CASE("image: xtensor adapters share memory") {
  auto img = gradient_image(3, 4);
  auto view = cnnviz::as_xtensor<uint8_t>(img);
  CHECK(view.shape()[0] == 3);
  CHECK(view(2, 3, 1) == img[2][3][1].item<uint8_t>());
  view(0, 0, 0) = 42;
  CHECK(img[0][0][0].item<uint8_t>() == 42);
  auto doubled = cnnviz::from_xtensor(xt::cast<int32_t>(view) * 2);
  CHECK(torch::equal(doubled, img.to(torch::kInt32) * 2));
  CHECK_THROWS_AS(cnnviz::as_xtensor<float>(img), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::as_xtensor<uint8_t>(img.transpose(0, 1)), c10::ValueError);
}
