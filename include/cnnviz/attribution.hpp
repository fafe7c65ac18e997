#pragma once
// Attribution: which input pixels a prediction depends on.
//   attribution_gradients.hpp  saliency, smooth_grad, guided_backprop
//   cam.hpp                    grad_cam, grad_cam_pp, layer_cam, score_cam, guided_grad_cam
//   integrated_gradients.hpp   integrated_gradients (trapezoid or Gauss-Legendre, delta)
//   perturbation.hpp           occlusion
//   lime.hpp                   lime, slic
// Every method takes a batch x (N, C, H, W) and a Target (the predicted class by default,
// one class for all, or one per sample), differentiates with respect to its inputs only,
// and bounds memory with a batch_size where it expands the batch.
#include "cnnviz/attribution_common.hpp"
#include "cnnviz/attribution_gradients.hpp"
#include "cnnviz/cam.hpp"
#include "cnnviz/integrated_gradients.hpp"
#include "cnnviz/lime.hpp"
#include "cnnviz/perturbation.hpp"
