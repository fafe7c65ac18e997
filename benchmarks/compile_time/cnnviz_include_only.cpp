// Parsing cost alone: the headers, no call.
#include <cnnviz/cnnviz.hpp>
int main(){return 0;}
