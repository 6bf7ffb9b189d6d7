// NumPy .npy files (format versions 1.0-3.0), little-endian, C order.
#pragma once

#include <string>

#include "core/tensor.hpp"

namespace eaq {

// Reads bool, int8/16/32/64, uint8, float16/32 arrays. Fortran order, big-endian data and other
// dtypes are refused with an error naming the file.
HostTensor read_npy(const std::string& path);
// Writes F32, F16, I32, I64, I8, U8 or Bool tensors, atomically.
void write_npy(const std::string& path, const HostTensor& tensor);

}  // namespace eaq
