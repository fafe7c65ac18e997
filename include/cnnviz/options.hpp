#pragma once
// How an Options struct is declared: one row per option (type, name, default, doc) in an
// X-macro list, expanded into TORCH_ARG accessors (chained setters, `o.iterations(100)`)
// and into `for_each_option`, which the Python bindings iterate. An option is so written
// once in C++; the bindings never list fields again.
//
//   #define CNNVIZ_SALIENCY_OPTIONS(X) X(Reduction, reduction, Reduction::max, "Max or mean over channels.")
//   struct SaliencyOptions {
//     CNNVIZ_OPTIONS(SaliencyOptions, CNNVIZ_SALIENCY_OPTIONS)
//   };
//
// A default holding a comma goes in parentheses: X(std::vector<int64_t>, size, (std::vector<int64_t>{1, 2}), "...").

#include <torch/arg.h>

#include <utility>

#define CNNVIZ_DETAIL_OPTION_DECLARE(T, name, default_value, doc) TORCH_ARG(T, name) = default_value;
#define CNNVIZ_DETAIL_OPTION_VISIT(T, name, default_value, doc)                                    \
  visit(#name, doc, [](const CnnvizOptionsSelf& o) -> const T& { return o.name(); },              \
        [](CnnvizOptionsSelf& o, T value) { o.name(std::move(value)); });

/// Declares the options of LIST (an X-macro of rows X(type, name, default, doc)) in Self.
#define CNNVIZ_OPTIONS(Self, LIST)                                                      \
 public:                                                                                \
  using CnnvizOptionsSelf = Self;                                                       \
  /** Calls visit(name, doc, getter, setter) for each option, in declaration order. */ \
  template <class Visit>                                                                \
  static void for_each_option(Visit&& visit) {                                          \
    LIST(CNNVIZ_DETAIL_OPTION_VISIT)                                                    \
  }                                                                                     \
  LIST(CNNVIZ_DETAIL_OPTION_DECLARE)                                                    \
 public:
