// Images: decoding and encoding, preprocessing, colormaps, overlays, grids.
#include <cerrno>
#include <system_error>

#include "bindings.hpp"
#include "cnnviz/image.hpp"

namespace cnnviz {
namespace bindings {
namespace {

DecodeOptions decode_options(int64_t max_side, int64_t max_pixels) {
  return DecodeOptions().max_side(max_side).max_pixels(max_pixels);
}

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

  // The defaults of the Python wrappers, read from default-constructed options.
  const DecodeOptions dopt;
  const PreprocessOptions popt;
  const ColormapOptions copt;
  const OverlayOptions oopt;
  const GridOptions gopt;
  py::dict defaults;
  defaults["max_side"] = dopt.max_side();
  defaults["max_pixels"] = dopt.max_pixels();
  defaults["quality"] = 95;
  defaults["size"] = py::tuple(py::cast(popt.size()));
  defaults["resize"] = popt.resize();
  defaults["antialias"] = popt.antialias();
  defaults["colormap"] = copt.name();
  defaults["overlay_alpha"] = oopt.alpha();
  defaults["overlay_colormap"] = oopt.colormap();
  defaults["nrow"] = gopt.nrow();
  defaults["padding"] = gopt.padding();
  defaults["pad_value"] = gopt.pad_value();
  m.attr("_image_defaults") = defaults;

  m.def("load_image", [](const std::string& path, int64_t max_side, int64_t max_pixels) {
    py::gil_scoped_release nogil;
    return load_image(path, decode_options(max_side, max_pixels));
  }, py::arg("path"), py::arg("max_side") = dopt.max_side(), py::arg("max_pixels") = dopt.max_pixels());

  m.def("decode_image", [](const torch::Tensor& data, int64_t max_side, int64_t max_pixels) {
    py::gil_scoped_release nogil;
    return decode_image(data, decode_options(max_side, max_pixels));
  }, py::arg("data"), py::arg("max_side") = dopt.max_side(), py::arg("max_pixels") = dopt.max_pixels());
  m.def("decode_image", [](const py::buffer& data, int64_t max_side, int64_t max_pixels) {
    py::buffer_info info = data.request();
    TORCH_CHECK_VALUE(info.itemsize == 1 && info.ndim == 1 && (info.size <= 1 || info.strides[0] == 1),
                      "cnnviz: decode_image takes bytes, bytearray or a contiguous 1-D uint8 buffer");
    py::gil_scoped_release nogil;
    return decode_image(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size),
                        decode_options(max_side, max_pixels));
  }, py::arg("data"), py::arg("max_side") = dopt.max_side(), py::arg("max_pixels") = dopt.max_pixels());

  m.def("encode_image", [](const torch::Tensor& image, const std::string& format, int quality) {
    std::vector<uint8_t> bytes;
    {
      py::gil_scoped_release nogil;
      bytes = encode_image(image, format, quality);
    }
    return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }, py::arg("image"), py::arg("format"), py::arg("quality") = 95);

  m.def("save_image", [](const torch::Tensor& image, const std::string& path, int quality) {
    py::gil_scoped_release nogil;
    save_image(image, path, quality);
  }, py::arg("image"), py::arg("path"), py::arg("quality") = 95);

  m.def("as_image_tensor", [](const torch::Tensor& image) { return as_image_tensor(image); }, py::arg("image"));

  m.def("resize_image", [](const torch::Tensor& image, const std::vector<int64_t>& size, bool antialias) {
    TORCH_CHECK_VALUE(size.size() == 2, "cnnviz: resize_image: size must be (height, width)");
    py::gil_scoped_release nogil;
    return resize_image(image, size[0], size[1], antialias);
  }, py::arg("image"), py::arg("size"), py::arg("antialias") = true);

  m.def("preprocess", [](const torch::Tensor& image, const c10::optional<std::vector<int64_t>>& size, int64_t resize,
                         const std::vector<double>& mean, const std::vector<double>& std, bool antialias) {
    py::gil_scoped_release nogil;
    return preprocess(image, PreprocessOptions()
                                 .size(size.value_or(std::vector<int64_t>{}))
                                 .resize(resize)
                                 .mean(mean)
                                 .std(std)
                                 .antialias(antialias));
  }, py::arg("image"), py::arg("size") = popt.size(), py::arg("resize") = popt.resize(),
     py::arg("mean") = popt.mean(), py::arg("std") = popt.std(), py::arg("antialias") = popt.antialias());

  m.def("deprocess", [](const torch::Tensor& tensor, const std::vector<double>& mean, const std::vector<double>& std) {
    py::gil_scoped_release nogil;
    return deprocess(tensor, mean, std);
  }, py::arg("tensor"), py::arg("mean") = kImageNetMean, py::arg("std") = kImageNetStd);

  m.def("colormap_names", &colormap_names);
  m.def("colormap", [](const torch::Tensor& map, const std::string& name, c10::optional<double> vmin,
                       c10::optional<double> vmax, bool symmetric) {
    py::gil_scoped_release nogil;
    return colormap(map, ColormapOptions(name).vmin(vmin).vmax(vmax).symmetric(symmetric));
  }, py::arg("map"), py::arg("name") = copt.name(), py::arg("vmin") = py::none(), py::arg("vmax") = py::none(),
     py::arg("symmetric") = copt.symmetric());

  m.def("overlay", [](const torch::Tensor& image, const torch::Tensor& heatmap, double alpha,
                      const std::string& name, c10::optional<double> vmin, c10::optional<double> vmax) {
    py::gil_scoped_release nogil;
    return overlay(image, heatmap, OverlayOptions().alpha(alpha).colormap(name).vmin(vmin).vmax(vmax));
  }, py::arg("image"), py::arg("heatmap"), py::arg("alpha") = oopt.alpha(), py::arg("colormap") = oopt.colormap(),
     py::arg("vmin") = py::none(), py::arg("vmax") = py::none());

  auto grid_options = [](int64_t nrow, int64_t padding, double pad_value, bool normalize, bool scale_each,
                         const std::string& cmap) {
    return GridOptions().nrow(nrow).padding(padding).pad_value(pad_value).normalize(normalize)
        .scale_each(scale_each).colormap(cmap);
  };
  m.def("make_grid", [grid_options](const torch::Tensor& images, int64_t nrow, int64_t padding, double pad_value,
                                    bool normalize, bool scale_each, const std::string& cmap) {
    py::gil_scoped_release nogil;
    return make_grid(images, grid_options(nrow, padding, pad_value, normalize, scale_each, cmap));
  }, py::arg("images"), py::arg("nrow") = gopt.nrow(), py::arg("padding") = gopt.padding(),
     py::arg("pad_value") = gopt.pad_value(), py::arg("normalize") = gopt.normalize(),
     py::arg("scale_each") = gopt.scale_each(), py::arg("colormap") = gopt.colormap());
  m.def("make_grid", [grid_options](const std::vector<torch::Tensor>& images, int64_t nrow, int64_t padding,
                                    double pad_value, bool normalize, bool scale_each, const std::string& cmap) {
    py::gil_scoped_release nogil;
    return make_grid(images, grid_options(nrow, padding, pad_value, normalize, scale_each, cmap));
  }, py::arg("images"), py::arg("nrow") = gopt.nrow(), py::arg("padding") = gopt.padding(),
     py::arg("pad_value") = gopt.pad_value(), py::arg("normalize") = gopt.normalize(),
     py::arg("scale_each") = gopt.scale_each(), py::arg("colormap") = gopt.colormap());
}

}  // namespace bindings
}  // namespace cnnviz
