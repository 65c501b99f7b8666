#pragma once

// Marks a function usable from CUDA kernels as well as from host code; nothing under a plain C++
// compiler.
#if defined(__CUDACC__)
#define AEG_HOST_DEVICE __host__ __device__
#else
#define AEG_HOST_DEVICE
#endif
