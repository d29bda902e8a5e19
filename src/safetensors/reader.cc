// SafetensorsFile: map, parse and validate one .safetensors file
// (comfyui-gguf.md §1, "What the reference validator checks").
#include <algorithm>

#include "base/byte_reader.h"
#include "safetensors/json_parse.h"
#include "safetensors/safetensors.h"

namespace mixq::safetensors {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string DTypeNames() {
  std::string s;
  for (const auto& d : AllDTypes()) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

// Element count and byte size, refusing anything that overflows int64.
Status SizeOf(const internal::RawTensor& raw, const DType& dtype, TensorEntry* out) {
  constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
  uint64_t n = 1;
  for (uint64_t dim : raw.shape) {
    if (dim > kMax || (dim != 0 && n > kMax / dim)) {
      return Status::Corruption("tensor '" + raw.name + "' has a shape whose element count overflows");
    }
    n *= dim;
    out->shape.push_back(static_cast<int64_t>(dim));
  }
  if (n > kMax / dtype.n_bytes) return Status::Corruption("tensor '" + raw.name + "' is too large to address");
  out->n_elems = static_cast<int64_t>(n);
  out->n_bytes = n * dtype.n_bytes;
  return Status::Ok();
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  auto mapping = MappedFile::Open(path);
  MIXQ_TRY(mapping);
  SafetensorsFile file;
  file.mapping_ = std::move(mapping).value();
  file.bytes_ = file.mapping_->bytes();
  file.path_ = path;
  MIXQ_TRY(file.ParseAll());
  return file;
}

Result<SafetensorsFile> SafetensorsFile::Parse(std::span<const uint8_t> bytes, std::string name) {
  SafetensorsFile file;
  file.bytes_ = bytes;
  file.path_ = std::move(name);
  MIXQ_TRY(file.ParseAll());
  return file;
}

Status SafetensorsFile::ParseAll() {
  auto fail = [&](const Status& s) { return s.WithContext("invalid safetensors file '" + path_ + "'"); };
  ByteReader reader(bytes_);
  auto header_len = reader.Read<uint64_t>();
  if (!header_len) return fail(Status::Corruption("file is shorter than the 8-byte header length"));
  if (*header_len > kMaxHeaderBytes) {
    return fail(Status::Corruption("header length " + std::to_string(*header_len) + " exceeds the limit of " +
                                   std::to_string(kMaxHeaderBytes) + " bytes; not a safetensors file?"));
  }
  if (*header_len > reader.remaining()) {
    return fail(Status::Corruption("header length " + std::to_string(*header_len) + " runs past the end of the " +
                                   std::to_string(bytes_.size()) + "-byte file; truncated?"));
  }
  header_n_bytes_ = *header_len;
  auto header_bytes = reader.ReadSpan(*header_len);
  MIXQ_TRY(header_bytes);
  std::string_view text(reinterpret_cast<const char*>(header_bytes->data()), header_bytes->size());
  auto raw = internal::ParseHeaderJson(text);
  if (!raw) return fail(raw.error());
  metadata_ = std::move(raw->metadata);

  const uint64_t data_start = reader.offset();
  const uint64_t data_size = reader.remaining();
  tensors_.reserve(raw->tensors.size());
  for (auto& r : raw->tensors) {
    TensorEntry t;
    t.dtype = FindDType(r.dtype);
    if (t.dtype == nullptr) {
      return fail(Status::NotSupported("tensor '" + r.name + "' has dtype '" + r.dtype +
                                       "', which mixq does not know; known dtypes: " + DTypeNames()));
    }
    MIXQ_TRY(fail(SizeOf(r, *t.dtype, &t)));
    const uint64_t begin = r.data_offsets[0], end = r.data_offsets[1];
    if (end < begin) {
      return fail(Status::Corruption("tensor '" + r.name + "' has data_offsets [" + std::to_string(begin) + ", " +
                                     std::to_string(end) + ") that end before they begin"));
    }
    if (end - begin != t.n_bytes) {
      return fail(Status::Corruption("tensor '" + r.name + "' has data_offsets [" + std::to_string(begin) + ", " +
                                     std::to_string(end) + ") holding " + std::to_string(end - begin) +
                                     " bytes, but shape " + ShapeString(t.shape) + " of " + std::string(t.dtype->name) +
                                     " needs " + std::to_string(t.n_bytes)));
    }
    if (end > data_size) {
      return fail(Status::Corruption("tensor '" + r.name + "' data [" + std::to_string(begin) + ", " +
                                     std::to_string(end) + ") runs past the end of the " + std::to_string(data_size) +
                                     "-byte data buffer; truncated file?"));
    }
    t.name = std::move(r.name);
    t.file_offset = data_start + begin;
    tensors_.push_back(std::move(t));
  }

  // The tensors must tile the data buffer: sorted by offset, each starts where
  // the previous one ended, and the last ends at the end of the file.
  std::vector<const TensorEntry*> by_offset;
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorEntry* a, const TensorEntry* b) {
    return a->file_offset != b->file_offset ? a->file_offset < b->file_offset : a->n_bytes < b->n_bytes;
  });
  uint64_t expected = data_start;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry* t : by_offset) {
    if (t->file_offset < expected) {
      return fail(Status::Corruption("tensor '" + t->name + "' data at offset " +
                                     std::to_string(t->file_offset - data_start) + " overlaps tensor '" +
                                     previous->name + "'"));
    }
    if (t->file_offset > expected) {
      return fail(Status::Corruption(std::to_string(t->file_offset - expected) + " unused bytes before tensor '" +
                                     t->name + "' (data offset " + std::to_string(expected - data_start) + ")"));
    }
    expected = t->file_offset + t->n_bytes;
    previous = t;
  }
  if (expected != data_start + data_size) {
    return fail(Status::Corruption(std::to_string(data_start + data_size - expected) +
                                   " bytes after the last tensor's data; the header does not describe them"));
  }
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.name < b.name; });
  return Status::Ok();
}

const TensorEntry* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorEntry& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

std::span<const uint8_t> SafetensorsFile::Data(const TensorEntry& tensor) const {
  return bytes_.subspan(tensor.file_offset, tensor.n_bytes);
}

void SafetensorsFile::ReleaseData(const TensorEntry& tensor, uint64_t begin, uint64_t end) const {
  end = std::min(end, tensor.n_bytes);
  if (!mapping_ || begin >= end) return;
  DropResidentPages(bytes_.subspan(tensor.file_offset + begin, end - begin));
}

}  // namespace mixq::safetensors
