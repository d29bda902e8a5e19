#include "measure/cache.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace mixq::measure {

std::string CacheKey(const gguf::GgufFile& file, const MeasureOptions& options,
                     const std::vector<const formats::Format*>& types,
                     const std::vector<const formats::Format*>& calibration) {
  nlohmann::json key;
  key["file_bytes"] = file.file_size();
  key["n_tensors"] = file.tensors().size();
  key["n_ctx"] = options.n_ctx;
  key["n_chunks"] = options.n_chunks;
  key["bos_id"] = options.bos_id;
  key["method"] = options.method == formats::QuantMethod::kGgml ? "ggml" : "best";
  key["imatrix_entries"] = options.imatrix ? options.imatrix->entries.size() : 0;
  double imatrix_sum = 0;
  if (options.imatrix != nullptr) {
    for (const auto& [name, e] : options.imatrix->entries) {
      for (float v : e.in_sum2) imatrix_sum += v;
    }
  }
  key["imatrix_sum"] = imatrix_sum;
  for (auto* f : types) key["types"].push_back(f->name);
  for (auto* f : calibration) key["calibration"].push_back(f->name);
  key["scheme"] = options.scheme == CalibrationScheme::kExact ? "exact" : "linear";
  if (options.scheme == CalibrationScheme::kLinear) key["probe_layers"] = options.probe_layers;
  return key.dump();
}

Status MeasurementCache::Load() {
  if (path_.empty()) return Status::Ok();
  std::ifstream in(path_);
  if (!in) return Status::Ok();
  std::string line;
  if (!std::getline(in, line)) return Status::Ok();
  auto header = nlohmann::json::parse(line, nullptr, false);
  if (header.is_discarded() || !header.contains("key") || header["key"] != key_) return Status::Ok();
  header_written_ = true;
  for (int line_no = 2; std::getline(in, line); ++line_no) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("tensor") || !j.contains("types")) continue;
    TensorRecord rec;
    try {  // JSON of the wrong shape: the accessors throw
      rec.name = j["tensor"].get<std::string>();
      for (const auto& t : j["types"]) {
        rec.types.push_back({t.value("type", ""), t.value("n_bytes", int64_t{0}), t.value("error", 0.0),
                             t.value("kld", -1.0), t.value("local", -1.0)});
      }
    } catch (const nlohmann::json::exception& e) {
      return Status::Corruption("measurement cache '" + path_ + "' line " + std::to_string(line_no) + " is garbled (" +
                                e.what() + "); delete the file to measure afresh");
    }
    records_[rec.name] = std::move(rec);
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
  if (!header_written_) text = nlohmann::json{{"key", key_}}.dump() + "\n";
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
  return Status::Ok();
}

}  // namespace mixq::measure
