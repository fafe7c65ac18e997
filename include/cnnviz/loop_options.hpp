#pragma once
// The option rows the optimization loops (invert, maximize, deep_dream) share, declared
// once: each loop's Options list includes them with its own defaults (a default that
// differs between loops is a macro parameter). Light: torch's arg.h and the normalization.

#include <cstdint>

#include "cnnviz/enums.hpp"
#include "cnnviz/normalization.hpp"
#include "cnnviz/options.hpp"
#include "cnnviz/progress.hpp"
#include "cnnviz/snapshot.hpp"

/// Rows of every optimization loop: steps, step size, seed, jitter, the model's input
/// normalization, snapshots and progress.
#define CNNVIZ_LOOP_OPTIONS(X, iterations_default, learning_rate_default, jitter_default)                      \
  X(int64_t, iterations, iterations_default, "Optimization steps (deep_dream: per octave).")                     \
  X(double, learning_rate, learning_rate_default, "Step size (positive).")                                       \
  X(int64_t, seed, 0, "Seeds the start noise and the random jitter and transforms (>= 0).")                      \
  X(int64_t, jitter, jitter_default, "Before each forward the image is shifted by up to this many pixels.")      \
  X(Normalization, normalization, {},                                                                              \
    "The model's input normalization (pixels in [0, 1]): images are normalized with it and, where the loop "       \
    "clamps, kept in its valid range.")                                                                            \
  X(int64_t, snapshot_every, 0, "Take a snapshot of the image(s) every this many steps (0: never).")             \
  X(SnapshotCallback, on_snapshot, nullptr,                                                                       \
    "Handed each snapshot as it is taken: (step, images (N, C, H, W), normalized, detached).")                   \
  X(ProgressCallback, progress, nullptr,                                                                          \
    "Called after each step with (step, total, loss); returning false stops the loop (stopped_early).")

/// Rows of the loops that step with an optimizer (invert, maximize; deep_dream's step is
/// DeepDream's normalized gradient ascent, which has neither).
#define CNNVIZ_OPTIMIZER_OPTIONS(X)                                                      \
  X(Optimizer, optimizer, Optimizer::adam, "adam (as torch.optim.Adam) or sgd (with momentum).") \
  X(double, momentum, 0.9, "SGD momentum, or Adam's beta1 (in [0, 1)).")

/// Rows of the image priors on the normalized image: lambda_alpha * alpha_norm(z, alpha) +
/// lambda_tv * total_variation(z, tv_beta); a weight of 0 switches a prior off.
#define CNNVIZ_PRIOR_OPTIONS(X, lambda_alpha_default, lambda_tv_default)                        \
  X(double, alpha, 6, "Exponent of the alpha-norm prior (> 0).")                                 \
  X(double, lambda_alpha, lambda_alpha_default, "Weight of the alpha-norm prior (>= 0).")        \
  X(double, tv_beta, 2, "Exponent of the total-variation prior (> 0).")                          \
  X(double, lambda_tv, lambda_tv_default, "Weight of the total-variation prior (>= 0).")
