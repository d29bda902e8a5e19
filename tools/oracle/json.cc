#include "json.h"

#include <cmath>
#include <cstdio>

namespace oracle {

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string JsonNumber(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", x);
  return buf;
}

std::string JsonSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", s);
  return buf;
}

std::string JsonArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]";
}

void JsonObject::SetRaw(std::string_view key, std::string json) {
  for (auto& [k, v] : items_) {
    if (k == key) {
      v = std::move(json);
      return;
    }
  }
  items_.emplace_back(std::string(key), std::move(json));
}

std::string JsonObject::Dump() const {
  std::string out = "{";
  for (size_t i = 0; i < items_.size(); ++i) {
    out += (i ? "," : "") + JsonString(items_[i].first) + ":" + items_[i].second;
  }
  return out + "}";
}

}  // namespace oracle
