// Checkpoint: one .safetensors file, or the shards of an index JSON
// (comfyui-gguf.md §1, "Sharded checkpoints").
#include <algorithm>
#include <filesystem>
#include <set>

#include "base/byte_reader.h"
#include "base/model_file_kind.h"
#include "safetensors/json_parse.h"
#include "safetensors/safetensors.h"

namespace mixq::safetensors {
namespace {

// Index files are small (a name per tensor); anything far larger is not one.
constexpr uint64_t kMaxIndexBytes = 256u << 20;

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

Result<Checkpoint> Checkpoint::Open(const std::string& path) {
  auto kind = DetectModelFileKind(path);
  MIXQ_TRY(kind);
  if (*kind != ModelFileKind::kSafetensorsIndex) {
    auto file = SafetensorsFile::Open(path);
    MIXQ_TRY(file);
    Checkpoint c;
    c.path_ = path;
    c.tensors_ = file->tensors();
    c.files_.push_back(std::move(file).value());
    return c;
  }
  auto mapping = MappedFile::Open(path);
  MIXQ_TRY(mapping);
  if (mapping->size() > kMaxIndexBytes) {
    return Status::Corruption("invalid safetensors index '" + path + "': " + std::to_string(mapping->size()) +
                              " bytes is too large for an index");
  }
  ByteReader reader(mapping->bytes());
  auto bytes = reader.ReadSpan(reader.remaining());
  MIXQ_TRY(bytes);
  std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  std::string dir = std::filesystem::path(path).parent_path().string();
  return OpenIndex(text, dir.empty() ? "." : dir, path);
}

Result<Checkpoint> Checkpoint::OpenIndex(std::string_view index_json, const std::string& dir, std::string name) {
  const std::string context = "invalid safetensors index '" + name + "'";
  auto fail = [&](const Status& s) { return s.WithContext(context); };
  auto weight_map = internal::ParseIndexJson(index_json);
  if (!weight_map) return fail(weight_map.error());
  if (weight_map->empty()) return fail(Status::Corruption("'weight_map' lists no tensors"));

  std::vector<std::string> shard_names;
  for (const auto& [tensor, shard] : *weight_map) {
    if (!IsPlainFileName(shard)) {
      return fail(Status::Corruption("tensor '" + tensor + "' maps to '" + shard +
                                     "', which is not a file name beside the index"));
    }
    shard_names.push_back(shard);
  }
  std::sort(shard_names.begin(), shard_names.end());
  shard_names.erase(std::unique(shard_names.begin(), shard_names.end()), shard_names.end());

  Checkpoint c;
  c.path_ = std::move(name);
  c.sharded_ = true;
  for (uint32_t i = 0; i < shard_names.size(); ++i) {
    auto file = SafetensorsFile::Open(dir + "/" + shard_names[i]);
    if (!file) return fail(file.error().WithContext("shard '" + shard_names[i] + "'"));
    for (TensorEntry t : file->tensors()) {
      auto it = weight_map->find(t.name);
      if (it == weight_map->end()) {
        return fail(Status::Corruption("shard '" + shard_names[i] + "' holds tensor '" + t.name +
                                       "', which 'weight_map' does not list"));
      }
      if (it->second != shard_names[i]) {
        return fail(Status::Corruption("tensor '" + t.name + "' is in shard '" + shard_names[i] +
                                       "', but 'weight_map' puts it in '" + it->second + "'"));
      }
      t.shard = i;
      c.tensors_.push_back(std::move(t));
    }
    c.files_.push_back(std::move(file).value());
  }
  if (c.tensors_.size() != weight_map->size()) {
    std::set<std::string> found;
    for (const auto& t : c.tensors_) found.insert(t.name);
    for (const auto& [tensor, shard] : *weight_map) {
      if (!found.contains(tensor)) {
        return fail(Status::Corruption("tensor '" + tensor + "' is missing from shard '" + shard + "'"));
      }
    }
  }
  std::sort(c.tensors_.begin(), c.tensors_.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.name < b.name; });
  return c;
}

const std::map<std::string, std::string>& Checkpoint::metadata() const {
  static const std::map<std::string, std::string> kEmpty;
  return files_.empty() ? kEmpty : files_.front().metadata();
}

const TensorEntry* Checkpoint::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorEntry& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

uint64_t Checkpoint::total_file_bytes() const {
  uint64_t total = 0;
  for (const auto& f : files_) total += f.file_size();
  return total;
}

}  // namespace mixq::safetensors
