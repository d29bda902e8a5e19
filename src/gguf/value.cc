// Metadata values: constructors, equality, rendering and key-list edits.
#include <algorithm>
#include <cstdio>

#include "gguf/gguf.h"

namespace mixq::gguf {

std::string_view ValueTypeName(ValueType type) {
  static constexpr std::string_view kNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                "bool", "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(type);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

Value Value::Uint32(uint32_t v) {
  Value out;
  out.type = ValueType::kUint32;
  out.u64 = v;
  return out;
}

Value Value::Uint64(uint64_t v) {
  Value out;
  out.type = ValueType::kUint64;
  out.u64 = v;
  return out;
}

Value Value::Int32(int32_t v) {
  Value out;
  out.type = ValueType::kInt32;
  out.i64 = v;
  return out;
}

Value Value::Float32(float v) {
  Value out;
  out.type = ValueType::kFloat32;
  out.f64 = v;
  return out;
}

Value Value::String(std::string v) {
  Value out;
  out.type = ValueType::kString;
  out.str = std::move(v);
  return out;
}

Value Value::StringArray(const std::vector<std::string>& v) {
  Value out;
  out.type = ValueType::kArray;
  out.array_type = ValueType::kString;
  for (const auto& s : v) out.array.push_back(String(s));
  return out;
}

bool Value::operator==(const Value& other) const {
  if (type != other.type) return false;
  switch (type) {
    case ValueType::kString:
      return str == other.str;
    case ValueType::kArray:
      return array_type == other.array_type && array == other.array;
    case ValueType::kFloat32:
    case ValueType::kFloat64:
      // Compare bit patterns through the stored double so NaN payloads round-trip equal.
      return f64 == other.f64 || (f64 != f64 && other.f64 != other.f64);
    default:
      return u64 == other.u64 && i64 == other.i64;
  }
}

std::string Value::ToString(size_t max_elems) const {
  char buf[64];
  switch (type) {
    case ValueType::kString:
      return "\"" + str + "\"";
    case ValueType::kBool:
      return u64 ? "true" : "false";
    case ValueType::kFloat32:
    case ValueType::kFloat64:
      std::snprintf(buf, sizeof buf, "%g", f64);
      return buf;
    case ValueType::kInt8:
    case ValueType::kInt16:
    case ValueType::kInt32:
    case ValueType::kInt64:
      return std::to_string(i64);
    case ValueType::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < array.size() && i < max_elems; ++i) {
        if (i > 0) out += ", ";
        out += array[i].ToString(max_elems);
      }
      if (array.size() > max_elems) out += ", ... (" + std::to_string(array.size()) + " total)";
      return out + "]";
    }
    default:
      return std::to_string(u64);
  }
}

void SetValue(std::vector<KeyValue>& kvs, const std::string& key, Value value) {
  for (auto& kv : kvs) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  kvs.push_back({key, std::move(value)});
}

void EraseKey(std::vector<KeyValue>& kvs, std::string_view key) {
  std::erase_if(kvs, [&](const KeyValue& kv) { return kv.key == key; });
}

}  // namespace mixq::gguf
