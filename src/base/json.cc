#include "base/json.h"

#include <cmath>
#include <limits>

namespace mixq::json {
namespace {

// Records where parsing failed; nlohmann reports the offset only through an
// exception or a SAX handler, and libraries do not catch.
class ErrorLocator : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) override {
    position_ = position;
    return false;
  }
  std::size_t position() const { return position_; }

 private:
  std::size_t position_ = 0;
};

std::string Where(const std::string& where, const char* key) { return where + " key '" + key + "'"; }

}  // namespace

Result<Json> ParseJson(std::string_view text) {
  Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_discarded()) return doc;
  ErrorLocator locator;
  (void)Json::sax_parse(text.begin(), text.end(), &locator, nlohmann::json::input_format_t::json, false);
  return Status::Corruption("invalid JSON near byte " + std::to_string(locator.position()));
}

Result<const Json*> GetArray(const Json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array()) return Status::Corruption(Where(where, key) + " is missing or not an array");
  return &*it;
}

Result<std::string> GetString(const Json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return Status::Corruption(Where(where, key) + " is missing or not a string");
  return it->get<std::string>();
}

Result<int64_t> GetInt64(const Json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return Status::Corruption(Where(where, key) + " is missing");
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Status::Corruption(Where(where, key) + " is out of range");
    }
    return static_cast<int64_t>(v);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    // Producers that only have doubles (Python, JavaScript) write 1e9 or 5.0.
    double v = it->get<double>();
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e15) return static_cast<int64_t>(v);
  }
  return Status::Corruption(Where(where, key) + " is not an integer");
}

Result<double> GetDouble(const Json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return Status::Corruption(Where(where, key) + " is missing or not a number");
  double v = it->get<double>();
  if (!std::isfinite(v)) return Status::Corruption(Where(where, key) + " is not finite");
  return v;
}

Result<std::string> GetOptionalString(const Json& obj, const char* key, const std::string& where,
                                      const std::string& fallback) {
  if (obj.find(key) == obj.end()) return fallback;
  return GetString(obj, key, where);
}

Result<int64_t> GetOptionalInt64(const Json& obj, const char* key, const std::string& where, int64_t fallback) {
  if (obj.find(key) == obj.end()) return fallback;
  return GetInt64(obj, key, where);
}

Result<double> GetOptionalDouble(const Json& obj, const char* key, const std::string& where, double fallback) {
  if (obj.find(key) == obj.end()) return fallback;
  return GetDouble(obj, key, where);
}

Status CheckSchema(const Json& doc, const char* schema, int64_t version) {
  if (!doc.is_object()) return Status::Corruption(std::string("not a ") + schema + " document: not a JSON object");
  auto name = GetString(doc, "schema", "document");
  if (!name.has_value() || *name != schema) {
    return Status::Corruption(std::string("not a ") + schema + " document: key 'schema' must be \"" + schema + "\"");
  }
  auto v = GetInt64(doc, "version", "document");
  if (!v.has_value()) return v.status();
  if (*v != version) {
    return Status::NotSupported(std::string(schema) + " version " + std::to_string(*v) +
                                " is not supported (this mixq reads version " + std::to_string(version) + ")");
  }
  return Status::Ok();
}

std::string DumpJson(const Json& doc) { return doc.dump(1, ' ', false, Json::error_handler_t::replace) + "\n"; }

}  // namespace mixq::json
