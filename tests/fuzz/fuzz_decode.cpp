// libFuzzer target for the image decoder: the checks of src/stb_decode.hpp and stb_image
// itself, compiled here with the sanitizers (the library links the system's libstb, which is
// not instrumented). Not part of the CMake build; with clang:
//
//   clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -I/usr/include/stb \
//       tests/fuzz/fuzz_decode.cpp -o build/fuzz_decode
//   mkdir -p build/fuzz_corpus && cp ../shared/data/images/cifar10_samples/*.png build/fuzz_corpus/
//   build/fuzz_decode -max_total_time=300 -rss_limit_mb=2560 build/fuzz_corpus
//
// Any crash, sanitizer report, leak or out-of-memory is a bug; refusals are expected.

#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include "../../src/stb_decode.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Smaller limits than the defaults keep each input fast; the checks are the same.
  auto d = cnnviz::stb_decode::decode(data, size, 4096, int64_t(1) << 22);
  if (d.pixels) {
    // Touch every pixel so that a short buffer shows up as a sanitizer report.
    unsigned sum = 0;
    for (size_t i = 0; i < static_cast<size_t>(d.width) * d.height * 3; ++i) sum += d.pixels[i];
    volatile unsigned sink = sum;
    (void)sink;
    stbi_image_free(d.pixels);
  } else if (d.error.empty()) {
    __builtin_trap();  // a refusal always says why
  }
  return 0;
}
