// Parsing cost alone: the headers, no call.
#include <torch/torch.h>
int main(){return 0;}
