// A measured value that may be unavailable. When it is, reason() says why: "unavailable" is always
// explicit and never a silent 0.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace eaq::measure {

// Throws eaq::Error("unavailable: <reason>"); out of line so this header needs no fmt.
[[noreturn]] void throw_unavailable(const std::string& reason);

template <class T>
class Reading {
 public:
  // A default Reading is unavailable: nothing has measured it yet.
  Reading() : reason_("not measured") {}

  static Reading ok(T value) {
    Reading r;
    r.value_ = std::move(value);
    r.reason_.clear();
    return r;
  }
  static Reading unavailable(std::string reason) {
    Reading r;
    r.reason_ = reason.empty() ? std::string("unavailable") : std::move(reason);
    return r;
  }

  bool has_value() const { return value_.has_value(); }
  explicit operator bool() const { return has_value(); }

  // Throws eaq::Error carrying the reason when unavailable.
  const T& value() const {
    if (!value_) throw_unavailable(reason_);
    return *value_;
  }
  const T& operator*() const { return value(); }
  const T* operator->() const { return &value(); }
  const std::optional<T>& optional() const { return value_; }

  // Empty when the value is available.
  const std::string& reason() const { return reason_; }

  // f(value) when available, otherwise the same reason carried over to the new type.
  template <class F>
  auto map(F&& f) const -> Reading<std::decay_t<decltype(f(std::declval<const T&>()))>> {
    using U = std::decay_t<decltype(f(std::declval<const T&>()))>;
    if (!value_) return Reading<U>::unavailable(reason_);
    return Reading<U>::ok(f(*value_));
  }

 private:
  std::optional<T> value_;
  std::string reason_;
};

}  // namespace eaq::measure
