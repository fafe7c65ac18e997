#pragma once
// Umbrella header: all of cnnviz.
#include "cnnviz/model.hpp"
#include "cnnviz/progress.hpp"
#include "cnnviz/snapshot.hpp"
#include "cnnviz/capture.hpp"
#include "cnnviz/script_model.hpp"
#include "cnnviz/image.hpp"
#include "cnnviz/metrics.hpp"
#include "cnnviz/regularizers.hpp"
#include "cnnviz/inversion.hpp"
#include "cnnviz/maximization.hpp"
#include "cnnviz/attribution.hpp"
#include "cnnviz/adversarial.hpp"
