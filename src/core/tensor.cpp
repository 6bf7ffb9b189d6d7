#include "core/tensor.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace eaq {

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

HostTensor::HostTensor(DType dtype, Shape shape, const void* data,
                       std::shared_ptr<const void> owner)
    : dtype_(dtype), shape_(std::move(shape)), data_(data), owner_(std::move(owner)) {}

HostTensor HostTensor::empty(DType dtype, Shape shape) {
  for (std::int64_t d : shape)
    EAQ_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  // 64-byte aligned, zeroed storage.
  auto storage = std::shared_ptr<std::uint8_t[]>(
      new (std::align_val_t{64}) std::uint8_t[bytes + 1](),
      [](std::uint8_t* p) { ::operator delete[](p, std::align_val_t{64}); });
  const void* data = storage.get();
  return HostTensor(dtype, std::move(shape), data, std::shared_ptr<const void>(storage, data));
}

HostTensor HostTensor::from_f32(Shape shape, std::vector<float> values) {
  EAQ_ASSERT(shape_numel(shape) == static_cast<std::int64_t>(values.size()));
  HostTensor t = empty(DType::F32, std::move(shape));
  std::copy(values.begin(), values.end(), t.mutable_data<float>());
  return t;
}

HostTensor HostTensor::from_i32(Shape shape, std::vector<std::int32_t> values) {
  EAQ_ASSERT(shape_numel(shape) == static_cast<std::int64_t>(values.size()));
  HostTensor t = empty(DType::I32, std::move(shape));
  std::copy(values.begin(), values.end(), t.mutable_data<std::int32_t>());
  return t;
}

HostTensor HostTensor::to_f32() const {
  HostTensor out = empty(DType::F32, shape_);
  float* dst = out.mutable_data<float>();
  const std::int64_t n = numel();
  for (std::int64_t i = 0; i < n; ++i) {
    switch (dtype_) {
      case DType::F32:
        dst[i] = data<float>()[i];
        break;
      case DType::F16:
        dst[i] = f16_bits_to_f32(data<std::uint16_t>()[i]);
        break;
      case DType::BF16:
        dst[i] = bf16_bits_to_f32(data<std::uint16_t>()[i]);
        break;
      case DType::F8_E4M3:
        dst[i] = e4m3_bits_to_f32(data<std::uint8_t>()[i]);
        break;
      case DType::I8:
        dst[i] = data<std::int8_t>()[i];
        break;
      case DType::U8:
        dst[i] = data<std::uint8_t>()[i];
        break;
      case DType::I32:
        dst[i] = static_cast<float>(data<std::int32_t>()[i]);
        break;
      case DType::I64:
        dst[i] = static_cast<float>(data<std::int64_t>()[i]);
        break;
      case DType::Bool:
        dst[i] = data<std::uint8_t>()[i] ? 1.0f : 0.0f;
        break;
    }
  }
  return out;
}

std::vector<std::int64_t> HostTensor::to_i64() const {
  const std::int64_t n = numel();
  std::vector<std::int64_t> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    switch (dtype_) {
      case DType::I8:
        out[i] = data<std::int8_t>()[i];
        break;
      case DType::U8:
        out[i] = data<std::uint8_t>()[i];
        break;
      case DType::I32:
        out[i] = data<std::int32_t>()[i];
        break;
      case DType::I64:
        out[i] = data<std::int64_t>()[i];
        break;
      case DType::Bool:
        out[i] = data<std::uint8_t>()[i] ? 1 : 0;
        break;
      default:
        fail("expected an integer tensor, got {}", dtype_name(dtype_));
    }
  }
  return out;
}

HostTensor HostTensor::reshaped(Shape shape) const {
  EAQ_CHECK(shape_numel(shape) == numel(), "cannot reshape {} to {}", shape_str(shape_),
            shape_str(shape));
  return HostTensor(dtype_, std::move(shape), data_, owner_);
}

}  // namespace eaq
