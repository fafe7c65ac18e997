#pragma once
// Umbrella header: all of cnnviz.
#include "cnnviz/model.hpp"
#include "cnnviz/progress.hpp"
#include "cnnviz/capture.hpp"
#include "cnnviz/script_model.hpp"
