// The oracle's output: one JSON object per command, keys in the order they
// are first set, numbers as text that round-trips the float they came from.
#ifndef MIXQ_TOOLS_ORACLE_JSON_H_
#define MIXQ_TOOLS_ORACLE_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace oracle {

std::string JsonString(std::string_view s);
// %.9g (a float's value exactly, a double's to 9 digits); null when not finite.
std::string JsonNumber(double x);
// Seconds with millisecond resolution.
std::string JsonSeconds(double s);
std::string JsonArray(const std::vector<std::string>& items);

class JsonObject {
 public:
  // Setting a key again replaces its value in place, so that a command can
  // reserve a key's position before it knows the value.
  void SetRaw(std::string_view key, std::string json);
  void Str(std::string_view key, std::string_view v) { SetRaw(key, JsonString(v)); }
  void Bool(std::string_view key, bool v) { SetRaw(key, v ? "true" : "false"); }
  void Int(std::string_view key, int64_t v) { SetRaw(key, std::to_string(v)); }
  void Num(std::string_view key, double v) { SetRaw(key, JsonNumber(v)); }
  void Secs(std::string_view key, double v) { SetRaw(key, JsonSeconds(v)); }
  std::string Dump() const;

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

}  // namespace oracle

#endif  // MIXQ_TOOLS_ORACLE_JSON_H_
