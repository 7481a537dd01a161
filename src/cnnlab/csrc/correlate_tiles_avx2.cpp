// correlate_tiles.cpp compiled for AVX2 + FMA: the same float32 tile kernels (namespace
// cnnlab::tiles::avx2), for CPUs with AVX2 but not the AVX-512 set that file's own build needs.
#define CNNLAB_TILES_AVX2
#include "correlate_tiles.cpp"
