// TANDEM_HD marks small inline functions that both the C++ code and CUDA kernels call (block
// decoding, scale unpacking), so one definition serves both and the CPU tests cover it.
#pragma once

#if defined(__CUDACC__)
#define TANDEM_HD __host__ __device__
#else
#define TANDEM_HD
#endif
