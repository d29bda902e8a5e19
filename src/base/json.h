// JSON without exceptions: reading untrusted documents into Status values
// (every library that reads JSON uses these instead of nlohmann's throwing
// accessors), and writing JSON files atomically.
#ifndef MIXQ_BASE_JSON_H_
#define MIXQ_BASE_JSON_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"

namespace mixq::json {

using Json = nlohmann::json;

// Corruption with the byte offset of the first syntax error.
Result<Json> ParseJson(std::string_view text);

// Typed access to obj[key]; `where` names the object in error messages.
// The Optional* forms return `fallback` when the key is absent.
Result<const Json*> GetArray(const Json& obj, const char* key, const std::string& where);
Result<std::string> GetString(const Json& obj, const char* key, const std::string& where);
Result<int64_t> GetInt64(const Json& obj, const char* key, const std::string& where);
Result<double> GetDouble(const Json& obj, const char* key, const std::string& where);
Result<std::string> GetOptionalString(const Json& obj, const char* key, const std::string& where,
                                      const std::string& fallback);
Result<int64_t> GetOptionalInt64(const Json& obj, const char* key, const std::string& where, int64_t fallback);
Result<double> GetOptionalDouble(const Json& obj, const char* key, const std::string& where, double fallback);

// Checks "schema" and "version" of a mixq document.
Status CheckSchema(const Json& doc, const char* schema, int64_t version);

// Serialises without throwing (invalid UTF-8 in strings is replaced).
std::string DumpJson(const Json& doc);

}  // namespace mixq::json

#endif  // MIXQ_BASE_JSON_H_
