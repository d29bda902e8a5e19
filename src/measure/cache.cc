#include "measure/cache.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/json.h"
#include "base/text_file.h"

namespace mixq::measure {

namespace {

// One cache line: {"tensor": NAME, "types": [{"type", "n_bytes", "error", "kld", "local"}, ...]}.
Result<TensorRecord> ParseRecord(const json::Json& j, const std::string& where) {
  TensorRecord rec;
  MIXQ_ASSIGN_OR_RETURN(rec.name, json::GetString(j, "tensor", where));
  MIXQ_ASSIGN_OR_RETURN(const json::Json* types, json::GetArray(j, "types", where));
  for (const auto& t : *types) {
    if (!t.is_object()) return Status::Corruption(where + ": a type is not an object");
    TypeRecord tr;
    MIXQ_ASSIGN_OR_RETURN(tr.type, json::GetOptionalString(t, "type", where, ""));
    MIXQ_ASSIGN_OR_RETURN(tr.n_bytes, json::GetOptionalInt64(t, "n_bytes", where, 0));
    MIXQ_ASSIGN_OR_RETURN(tr.error, json::GetOptionalDouble(t, "error", where, 0.0));
    MIXQ_ASSIGN_OR_RETURN(tr.kld, json::GetOptionalDouble(t, "kld", where, -1.0));
    MIXQ_ASSIGN_OR_RETURN(tr.local, json::GetOptionalDouble(t, "local", where, -1.0));
    rec.types.push_back(std::move(tr));
  }
  return rec;
}

std::string HashOf(const quantize::Imatrix& imatrix) {
  ContentHasher h;
  for (const auto& [name, e] : imatrix.entries) {
    h.UpdateString(name);
    h.UpdateValues(std::span<const float>(e.in_sum2));
    h.UpdateValues(std::span<const float>(e.counts));
  }
  return h.HexDigest();
}

std::string Names(const std::vector<const formats::Format*>& types) {
  std::string out;
  for (auto* f : types) {
    if (!out.empty()) out += ',';
    out.append(f->name);
  }
  return out;
}

}  // namespace

CacheKey MeasureCacheKey(const gguf::GgufFile& file, std::span<const int32_t> tokens, const MeasureOptions& options,
                         const std::vector<const formats::Format*>& types,
                         const std::vector<const formats::Format*>& calibration) {
  CacheKey key = {
      {"mixq version", MIXQ_VERSION},
      {"model", file.ContentHash()},
      {"calibration tokens", HashOfValues(tokens)},
      {"imatrix", options.imatrix != nullptr ? HashOf(*options.imatrix) : "none"},
      {"n_ctx", std::to_string(options.n_ctx)},
      {"n_chunks", std::to_string(options.n_chunks)},
      {"bos_id", std::to_string(options.bos_id)},
      {"method", options.method == formats::QuantMethod::kGgml ? "ggml" : "best"},
      {"types", Names(types)},
      {"calibration types", Names(calibration)},
      {"scheme", options.scheme == CalibrationScheme::kExact ? "exact" : "linear"},
      {"error rows", std::to_string(options.error_rows)},
      // Records of mixq builds that scaled the sampled rows' sum up (before the
      // ratio estimate of measure/weight_errors.h) carry no such field, so a
      // cache of theirs is stale here.
      {"error estimate", "ratio to the nearest calibration type"},
      // The devices' forward passes agree to rounding only.
      {"device", std::string(engine::DeviceName(options.load.device))},
  };
  if (options.scheme == CalibrationScheme::kLinear) key["probe layers"] = std::to_string(options.probe_layers);
  return key;
}

Status MeasurementCache::Load(const std::function<void(const std::string&)>& on_note) {
  if (path_.empty()) return Status::Ok();
  auto lock = FileLock::Acquire(path_, [&] {
    if (on_note) on_note("measure: waiting for cache '" + path_ + "', locked by another mixq run");
  });
  MIXQ_TRY(lock);
  lock_.emplace(std::move(lock).value());
  if (!std::filesystem::exists(path_)) return Status::Ok();  // nothing measured yet
  MIXQ_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path_));
  // A process killed mid-write leaves a torn last line: the next record must
  // start a line of its own, or it would be glued to the torn one and lost.
  torn_tail_ = !text.empty() && text.back() != '\n';
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line)) return Status::Ok();
  auto header = nlohmann::json::parse(line, nullptr, false);
  CacheKey cached;
  if (!header.is_discarded() && header.contains("key") && header["key"].is_object()) {
    for (const auto& [field, value] : header["key"].items()) {
      if (value.is_string()) cached[field] = value.get<std::string>();
    }
  }
  if (std::string why = StaleReason(cached, key_); !why.empty()) {
    if (on_note) on_note("measure: cache '" + path_ + "' is stale (" + why + "); measuring afresh");
    return Status::Ok();
  }
  header_written_ = true;
  for (int line_no = 2; std::getline(in, line); ++line_no) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("tensor") || !j.contains("types")) continue;
    auto rec = ParseRecord(j, "measurement cache '" + path_ + "' line " + std::to_string(line_no));
    if (!rec) return Status::Corruption(rec.error().message() + " (garbled); delete the file to measure afresh");
    records_[rec->name] = std::move(rec).value();
  }
  return Status::Ok();
}

const TensorRecord* MeasurementCache::Find(const std::string& tensor) const {
  auto it = records_.find(tensor);
  return it == records_.end() ? nullptr : &it->second;
}

Status MeasurementCache::Append(const TensorRecord& record) {
  records_[record.name] = record;
  if (path_.empty()) return Status::Ok();
  std::FILE* f = std::fopen(path_.c_str(), header_written_ ? "a" : "w");
  if (f == nullptr) return Status::IOError("cannot write measurement cache '" + path_ + "': " + std::strerror(errno));
  std::string text;
  if (!header_written_) {
    text = nlohmann::json{{"key", key_}}.dump() + "\n";
  } else if (torn_tail_) {
    text = "\n";  // ends the torn line, which Load ignores
  }
  nlohmann::json j;
  j["tensor"] = record.name;
  j["types"] = nlohmann::json::array();
  for (const auto& t : record.types) {
    j["types"].push_back(
        {{"type", t.type}, {"n_bytes", t.n_bytes}, {"error", t.error}, {"kld", t.kld}, {"local", t.local}});
  }
  text += j.dump() + "\n";
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) return Status::IOError("cannot write measurement cache '" + path_ + "'");
  header_written_ = true;
  torn_tail_ = false;
  return Status::Ok();
}

}  // namespace mixq::measure
