// Event-driven parsing of the header and index JSON (comfyui-gguf.md §1).
#include "safetensors/json_parse.h"

#include <nlohmann/json.hpp>
#include <set>

namespace mixq::safetensors::internal {
namespace {

using Json = nlohmann::json;

enum class Kind { kNull, kBool, kUnsigned, kNegative, kFraction, kString, kObject, kArray };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return "a boolean";
    case Kind::kUnsigned:
      return "a number";
    case Kind::kNegative:
      return "a negative number";
    case Kind::kFraction:
      return "a fractional number";
    case Kind::kString:
      return "a string";
    case Kind::kObject:
      return "an object";
    case Kind::kArray:
      return "an array";
  }
  return "a value";
}

// Turns nlohmann's SAX callbacks into OnValue/OnKey/OnEnd calls of the derived
// parser and skips whole values it chose to ignore. The first failure is kept
// in status_ and stops the parse.
template <typename Derived>
class SaxBase {
 public:
  bool null() { return Value(Kind::kNull); }
  bool boolean(bool) { return Value(Kind::kBool); }
  bool number_integer(Json::number_integer_t) { return Value(Kind::kNegative); }
  bool number_unsigned(Json::number_unsigned_t v) { return Value(Kind::kUnsigned, v); }
  bool number_float(Json::number_float_t, const Json::string_t&) { return Value(Kind::kFraction); }
  bool string(Json::string_t& s) { return Value(Kind::kString, 0, &s); }
  bool binary(Json::binary_t&) { return Fail("binary value in JSON"); }
  bool start_object(std::size_t) { return Value(Kind::kObject); }
  bool start_array(std::size_t) { return Value(Kind::kArray); }
  bool end_object() { return End(); }
  bool end_array() { return End(); }
  bool key(Json::string_t& k) { return skip_ > 0 ? true : Self().OnKey(k); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    std::string what = ex.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag: the rest says it.
    if (size_t tag_end = what.find("] "); what.starts_with("[json.") && tag_end != std::string::npos) {
      what = what.substr(tag_end + 2);
    }
    return Fail("invalid JSON: " + what);
  }

  Status Run(std::string_view text) {
    bool ok = Json::sax_parse(text.begin(), text.end(), this);
    if (!status_.ok()) return status_;
    if (!ok) return Status::Corruption("invalid JSON");
    return Status::Ok();
  }

 protected:
  bool Fail(std::string message) {
    if (status_.ok()) status_ = Status::Corruption(std::move(message));
    return false;
  }
  // Called from OnValue for an object or array: ignore it and all it holds.
  void SkipOpenedContainer() { skip_ = 1; }

 private:
  Derived& Self() { return static_cast<Derived&>(*this); }
  bool Value(Kind kind, uint64_t number = 0, std::string* text = nullptr) {
    if (skip_ > 0) {
      if (kind == Kind::kObject || kind == Kind::kArray) ++skip_;
      return true;
    }
    return Self().OnValue(kind, number, text);
  }
  bool End() {
    if (skip_ > 0) {
      --skip_;
      return true;
    }
    return Self().OnEnd();
  }

  Status status_;
  int64_t skip_ = 0;
};

class HeaderParser : public SaxBase<HeaderParser> {
 public:
  RawHeader header;

  bool OnKey(const std::string& k) {
    if (level_ == 1) {
      if (!top_keys_.insert(k).second) return Fail("duplicate key '" + k + "' in header");
      entry_ = k;
      return true;
    }
    if (in_metadata_) {
      meta_key_ = k;
      return true;
    }
    field_ = k == "dtype"          ? Field::kDtype
             : k == "shape"        ? Field::kShape
             : k == "data_offsets" ? Field::kOffsets
                                   : Field::kOther;
    if (field_ != Field::kOther && !fields_seen_.insert(k).second) {
      return Fail("tensor '" + entry_ + "' has two '" + k + "' fields");
    }
    return true;
  }

  bool OnValue(Kind kind, uint64_t number, std::string* text) {
    switch (level_) {
      case 0:
        if (kind != Kind::kObject) return Fail(std::string("header is ") + KindName(kind) + ", not a JSON object");
        level_ = 1;
        return true;
      case 1:
        if (kind != Kind::kObject)
          return Fail("header entry '" + entry_ + "' is " + KindName(kind) + ", not an object");
        level_ = 2;
        in_metadata_ = entry_ == "__metadata__";
        tensor_ = RawTensor{entry_, "", {}, {}};
        fields_seen_.clear();
        return true;
      case 2:
        return InEntry(kind, text);
      default:
        if (kind != Kind::kUnsigned) {
          return Fail(FieldOfTensor() + " holds " + KindName(kind) + ", not a non-negative integer");
        }
        (field_ == Field::kShape ? tensor_.shape : tensor_.data_offsets).push_back(number);
        return true;
    }
  }

  bool OnEnd() {
    if (level_ == 3) {
      level_ = 2;
    } else if (level_ == 2) {
      level_ = 1;
      if (!in_metadata_) {
        for (const char* f : {"dtype", "shape", "data_offsets"}) {
          if (!fields_seen_.contains(f)) return Fail("tensor '" + entry_ + "' has no '" + f + "' field");
        }
        if (tensor_.data_offsets.size() != 2) {
          return Fail("'data_offsets' of tensor '" + entry_ + "' has " + std::to_string(tensor_.data_offsets.size()) +
                      " values, not 2");
        }
        header.tensors.push_back(std::move(tensor_));
      }
      in_metadata_ = false;
    } else {
      level_ = 0;
    }
    return true;
  }

 private:
  enum class Field { kDtype, kShape, kOffsets, kOther };

  // "'shape' of tensor 'x'", built by appending (GCC 12 warns falsely on "'" + std::string).
  std::string FieldOfTensor() const {
    std::string s(field_ == Field::kShape ? "'shape'" : "'data_offsets'");
    s.append(" of tensor '").append(entry_).append("'");
    return s;
  }

  bool InEntry(Kind kind, std::string* text) {
    if (in_metadata_) {
      if (kind != Kind::kString) {
        return Fail("__metadata__ value '" + meta_key_ + "' is " + KindName(kind) + ", not a string");
      }
      if (!header.metadata.emplace(meta_key_, *text).second) {
        return Fail("duplicate __metadata__ key '" + meta_key_ + "'");
      }
      return true;
    }
    switch (field_) {
      case Field::kDtype:
        if (kind != Kind::kString) return Fail("'dtype' of tensor '" + entry_ + "' is " + KindName(kind));
        tensor_.dtype = *text;
        return true;
      case Field::kShape:
      case Field::kOffsets:
        if (kind != Kind::kArray) {
          return Fail(FieldOfTensor() + " is " + KindName(kind) + ", not an array");
        }
        level_ = 3;
        return true;
      case Field::kOther:
        if (kind == Kind::kObject || kind == Kind::kArray) SkipOpenedContainer();
        return true;
    }
    return true;
  }

  int level_ = 0;  // open containers: 1 = top object, 2 = an entry, 3 = an array in an entry
  bool in_metadata_ = false;
  std::string entry_;
  std::string meta_key_;
  Field field_ = Field::kOther;
  RawTensor tensor_;
  std::set<std::string> top_keys_;
  std::set<std::string> fields_seen_;
};

class IndexParser : public SaxBase<IndexParser> {
 public:
  std::map<std::string, std::string> weight_map;
  bool seen_weight_map = false;

  bool OnKey(const std::string& k) {
    key_ = k;
    return true;
  }

  bool OnValue(Kind kind, uint64_t, std::string* text) {
    if (level_ == 0) {
      if (kind != Kind::kObject) return Fail(std::string("index is ") + KindName(kind) + ", not a JSON object");
      level_ = 1;
      return true;
    }
    if (level_ == 1) {
      if (key_ != "weight_map") {
        if (kind == Kind::kObject || kind == Kind::kArray) SkipOpenedContainer();
        return true;
      }
      if (seen_weight_map) return Fail("index has two 'weight_map' keys");
      if (kind != Kind::kObject) return Fail(std::string("'weight_map' is ") + KindName(kind) + ", not an object");
      seen_weight_map = true;
      level_ = 2;
      return true;
    }
    if (kind != Kind::kString) return Fail("'weight_map' entry '" + key_ + "' is " + KindName(kind) + ", not a string");
    if (!weight_map.emplace(key_, *text).second) return Fail("tensor '" + key_ + "' is listed twice in 'weight_map'");
    return true;
  }

  bool OnEnd() {
    --level_;
    return true;
  }

 private:
  int level_ = 0;
  std::string key_;
};

}  // namespace

Result<RawHeader> ParseHeaderJson(std::string_view text) {
  HeaderParser parser;
  MIXQ_TRY(parser.Run(text));
  return std::move(parser.header);
}

Result<std::map<std::string, std::string>> ParseIndexJson(std::string_view text) {
  IndexParser parser;
  MIXQ_TRY(parser.Run(text));
  if (!parser.seen_weight_map) return Status::Corruption("index has no 'weight_map'");
  return std::move(parser.weight_map);
}

}  // namespace mixq::safetensors::internal
