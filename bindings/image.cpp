// Images: decoding and encoding, preprocessing, colormaps, overlays, grids. The Options
// classes are bound from their C++ rows (options_bridge.hpp); the Python wrappers take
// their defaults from default-constructed Options and fill them with fill_options.
#include <cerrno>
#include <system_error>

#include "bindings.hpp"
#include "cnnviz/image.hpp"
#include "options_bridge.hpp"

namespace cnnviz {
namespace bindings {
namespace {

// File errors arrive as OSError(errno, message), which Python turns into the matching
// subclass (FileNotFoundError, PermissionError, IsADirectoryError, ...).
void translate_system_error(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const std::system_error& e) {
    const bool is_errno = e.code().category() == std::generic_category() ||
                          e.code().category() == std::system_category();
    PyObject* args = Py_BuildValue("(is)", is_errno ? e.code().value() : EIO, e.what());
    if (args) {
      PyErr_SetObject(PyExc_OSError, args);
      Py_DECREF(args);
    }
  }
}

}  // namespace

void init_image(py::module_& m) {
  py::register_local_exception_translator(&translate_system_error);

  m.attr("IMAGENET_MEAN") = py::tuple(py::cast(kImageNetMean));
  m.attr("IMAGENET_STD") = py::tuple(py::cast(kImageNetStd));
  m.attr("CIFAR10_MEAN") = py::tuple(py::cast(kCifar10Mean));
  m.attr("CIFAR10_STD") = py::tuple(py::cast(kCifar10Std));
  m.attr("JPEG_QUALITY") = kJpegQuality;

  bind_options<DecodeOptions>(m, "DecodeOptions", "Limits on the dimensions an image file may declare.");
  bind_options<PreprocessOptions>(m, "PreprocessOptions", "How preprocess() turns an image into a model input.");
  bind_options<ColormapOptions>(m, "ColormapOptions", "How colormap() maps values to colors.");
  bind_options<OverlayOptions>(m, "OverlayOptions", "How overlay() blends a heatmap over an image.");
  bind_options<GridOptions>(m, "GridOptions", "How make_grid() lays out images.");

  m.def("load_image", [](const std::string& path, const DecodeOptions& o) {
    py::gil_scoped_release nogil;
    return load_image(path, o);
  }, py::arg("path"), py::arg("options") = DecodeOptions());

  m.def("decode_image", [](const torch::Tensor& data, const DecodeOptions& o) {
    py::gil_scoped_release nogil;
    return decode_image(data, o);
  }, py::arg("data"), py::arg("options") = DecodeOptions());
  m.def("decode_image", [](const py::buffer& data, const DecodeOptions& o) {
    py::buffer_info info = data.request();
    TORCH_CHECK_VALUE(info.itemsize == 1 && info.ndim == 1 && (info.size <= 1 || info.strides[0] == 1),
                      "cnnviz: decode_image takes bytes, bytearray or a contiguous 1-D uint8 buffer");
    py::gil_scoped_release nogil;
    return decode_image(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size), o);
  }, py::arg("data"), py::arg("options") = DecodeOptions());

  m.def("encode_image", [](const torch::Tensor& image, const std::string& format, int quality) {
    std::vector<uint8_t> bytes;
    {
      py::gil_scoped_release nogil;
      bytes = encode_image(image, format, quality);
    }
    return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }, py::arg("image"), py::arg("format"), py::arg("quality") = kJpegQuality);

  m.def("save_image", [](const torch::Tensor& image, const std::string& path, int quality) {
    py::gil_scoped_release nogil;
    save_image(image, path, quality);
  }, py::arg("image"), py::arg("path"), py::arg("quality") = kJpegQuality);

  m.def("as_image_tensor", [](const torch::Tensor& image) { return as_image_tensor(image); }, py::arg("image"));

  m.def("resize_image", [](const torch::Tensor& image, const std::vector<int64_t>& size, bool antialias) {
    TORCH_CHECK_VALUE(size.size() == 2, "cnnviz: resize_image: size must be (height, width)");
    py::gil_scoped_release nogil;
    return resize_image(image, size[0], size[1], antialias);
  }, py::arg("image"), py::arg("size"), py::arg("antialias") = true);

  m.def("preprocess", [](const torch::Tensor& image, const PreprocessOptions& o) {
    py::gil_scoped_release nogil;
    return preprocess(image, o);
  }, py::arg("image"), py::arg("options") = PreprocessOptions());

  const Normalization imagenet;
  m.def("deprocess", [](const torch::Tensor& tensor, const std::vector<double>& mean, const std::vector<double>& std) {
    py::gil_scoped_release nogil;
    return deprocess(tensor, Normalization(mean, std));
  }, py::arg("tensor"), py::arg("mean") = imagenet.mean(), py::arg("std") = imagenet.std());

  m.def("colormap_names", &colormap_names);
  m.def("colormap", [](const torch::Tensor& map, const ColormapOptions& o) {
    py::gil_scoped_release nogil;
    return colormap(map, o);
  }, py::arg("map"), py::arg("options") = ColormapOptions());

  m.def("overlay", [](const torch::Tensor& image, const torch::Tensor& heatmap, const OverlayOptions& o) {
    py::gil_scoped_release nogil;
    return overlay(image, heatmap, o);
  }, py::arg("image"), py::arg("heatmap"), py::arg("options") = OverlayOptions());

  m.def("make_grid", [](const torch::Tensor& images, const GridOptions& o) {
    py::gil_scoped_release nogil;
    return make_grid(images, o);
  }, py::arg("images"), py::arg("options") = GridOptions());
  m.def("make_grid", [](const std::vector<torch::Tensor>& images, const GridOptions& o) {
    py::gil_scoped_release nogil;
    return make_grid(images, o);
  }, py::arg("images"), py::arg("options") = GridOptions());
}

}  // namespace bindings
}  // namespace cnnviz
