// Turning CUDA and cuBLAS status codes into eaq::Error with the failing call named.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "core/error.hpp"

#define EAQ_CUDA_CHECK(call)                                                         \
  do {                                                                               \
    const cudaError_t eaq_status = (call);                                           \
    if (eaq_status != cudaSuccess)                                                   \
      ::eaq::fail("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(eaq_status), \
                  cudaGetErrorString(eaq_status), #call, __FILE__, __LINE__);        \
  } while (0)

#define EAQ_CUBLAS_CHECK(call)                                                            \
  do {                                                                                    \
    const cublasStatus_t eaq_status = (call);                                             \
    if (eaq_status != CUBLAS_STATUS_SUCCESS)                                              \
      ::eaq::fail("cuBLAS error {} ({}) in {} at {}:{}", cublasGetStatusName(eaq_status), \
                  cublasGetStatusString(eaq_status), #call, __FILE__, __LINE__);          \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define EAQ_CUDA_CHECK_LAUNCH() EAQ_CUDA_CHECK(cudaGetLastError())
