// placeholder
#include <torch/torch.h>
