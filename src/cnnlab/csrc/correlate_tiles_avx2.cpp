// correlate_tiles.cpp compiled for AVX2 + FMA: the same float32 tile kernels (namespace
// cnnlab::tiles::avx2), for CPUs with AVX2 and no AVX-512.
#define CNNLAB_TILES_AVX2
#include "correlate_tiles.cpp"
