// Host tensors: a dtype, a shape and bytes that something keeps alive (a vector, a mapped file).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace eaq {

using Shape = std::vector<std::int64_t>;

std::int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 128]"

class HostTensor {
 public:
  HostTensor() = default;
  // A view of bytes owned by `owner` (e.g. a memory-mapped file). Read-only by convention.
  HostTensor(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  static HostTensor empty(DType dtype, Shape shape);  // owned, zero-filled
  static HostTensor from_f32(Shape shape, std::vector<float> values);
  static HostTensor from_i32(Shape shape, std::vector<std::int32_t> values);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(static_cast<std::size_t>(i)); }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return shape_numel(shape_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  // False for a default-constructed tensor (no storage at all).
  bool has_data() const { return data_ != nullptr; }

  const void* raw() const { return data_; }
  void* mutable_raw() { return const_cast<void*>(data_); }
  template <class T>
  const T* data() const {
    return static_cast<const T*>(data_);
  }
  template <class T>
  T* mutable_data() {
    return static_cast<T*>(const_cast<void*>(data_));
  }

  // A copy converted to f32 (from F32, F16, BF16, F8_E4M3, I8, U8, I32, I64, Bool).
  HostTensor to_f32() const;
  // A copy converted to i64 (from any integer or Bool dtype).
  std::vector<std::int64_t> to_i64() const;
  HostTensor reshaped(Shape shape) const;  // same bytes, new shape of equal numel

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  const void* data_ = nullptr;
  std::shared_ptr<const void> owner_;
};

}  // namespace eaq
