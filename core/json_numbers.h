#pragma once
/// Numbers read from JSON files that Holo did not necessarily write itself (probe manifests,
/// checkpoint manifests, shard headers): a damaged or hand-edited file can hold any number
/// where an integer belongs, and nlohmann's own conversion of a fractional or out-of-range
/// number to an integer type is undefined behaviour. These convert checked and throw
/// std::out_of_range naming the field instead; callers say which file (as holo::IoError).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace holo {

/// `v` as T: for an integer T, a whole JSON number in T's range; for a floating-point T, any
/// JSON number (JSON numbers are finite). `what` names the field in the error.
template <class T>
T json_number(const nlohmann::json& v, const std::string& what) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  if constexpr (std::is_floating_point_v<T>) {
    if (v.is_number()) return v.get<T>();
  } else if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(u);
  } else if constexpr (std::is_signed_v<T>) {
    if (v.is_number_integer()) {
      const auto i = v.get<int64_t>();
      if (i >= std::numeric_limits<T>::min() && i <= std::numeric_limits<T>::max()) return static_cast<T>(i);
    }
  }
  throw std::out_of_range("\"" + what + "\" is not " +
                          (std::is_floating_point_v<T> ? "a number" : "a whole number in range") +
                          " (" + v.type_name() + ")");
}

/// `j.at(key)` checked as json_number does (nlohmann's out_of_range when `key` is absent).
template <class T>
T json_number_at(const nlohmann::json& j, const char* key) {
  return json_number<T>(j.at(key), key);
}

/// `j[key]` checked as json_number does, `fallback` when `j` has no `key`.
template <class T>
T json_number_or(const nlohmann::json& j, const char* key, T fallback) {
  const auto it = j.find(key);
  return it == j.end() ? fallback : json_number<T>(*it, key);
}

}  // namespace holo
