// tensors: every tensor of a GGUF validated and decoded by ggml itself
// (ggml_validate_row_data, the type's to_float), optionally against the same
// tensor of a reference file: the numbers, and whether the bytes are equal.
#include <cmath>
#include <cstring>
#include <fstream>

#include "common.h"

namespace oracle {
namespace {

// A GGUF file's tensors, read one at a time.
class TensorFile {
 public:
  explicit TensorFile(const std::string& path) : gguf_(OpenGguf(path)), in_(path, std::ios::binary) {}
  bool ok() const { return gguf_ != nullptr && in_.good(); }
  int64_t size() const { return gguf_get_n_tensors(gguf_.get()); }
  int64_t Find(const char* name) const { return gguf_find_tensor(gguf_.get(), name); }
  const char* name(int64_t i) const { return gguf_get_tensor_name(gguf_.get(), i); }
  ggml_type type(int64_t i) const { return gguf_get_tensor_type(gguf_.get(), i); }
  const int64_t* ne(int64_t i) const { return gguf_get_tensor_ne(gguf_.get(), i); }
  int64_t n_elements(int64_t i) const { return ne(i)[0] * ne(i)[1] * ne(i)[2] * ne(i)[3]; }

  // Empty when the file is shorter than its tensor table says.
  std::vector<char> Bytes(int64_t i) {
    std::vector<char> bytes(gguf_get_tensor_size(gguf_.get(), i));
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(gguf_get_data_offset(gguf_.get()) + gguf_get_tensor_offset(gguf_.get(), i)));
    in_.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!in_) bytes.clear();
    return bytes;
  }

 private:
  GgufPtr gguf_;
  std::ifstream in_;
};

// ggml's decoding of a tensor to f32; empty for types ggml cannot decode.
std::vector<float> Decode(ggml_type type, const std::vector<char>& bytes, int64_t n) {
  std::vector<float> values;
  if (type == GGML_TYPE_F32) {
    values.resize(static_cast<size_t>(n));
    std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  } else if (const ggml_to_float_t to_float = ggml_get_type_traits(type)->to_float) {
    values.resize(static_cast<size_t>(n));
    to_float(bytes.data(), values.data(), n);
  }
  return values;
}

void AddStats(const std::vector<float>& v, JsonObject* t) {
  float lo = INFINITY, hi = -INFINITY;
  double sum = 0, sum2 = 0;
  for (float x : v) {
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    sum += x;
    sum2 += double(x) * x;
  }
  const double n = static_cast<double>(v.size());
  t->Num("min", lo);
  t->Num("max", hi);
  t->Num("mean", sum / n);
  t->Num("rms", std::sqrt(sum2 / n));
}

void AddComparison(const std::vector<float>& v, const std::vector<float>& ref, JsonObject* t) {
  double se = 0, ref2 = 0, max_abs = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const double d = double(v[i]) - ref[i];
    se += d * d;
    ref2 += double(ref[i]) * ref[i];
    max_abs = std::max(max_abs, std::fabs(d));
  }
  const double rmse = std::sqrt(se / static_cast<double>(v.size()));
  const double ref_rms = std::sqrt(ref2 / static_cast<double>(v.size()));
  t->Num("rmse", rmse);
  t->Num("rel_rmse", rmse == 0 ? 0 : rmse / ref_rms);
  t->Num("max_abs_err", max_abs);
}

// The reference's fields of one tensor; false when the reference does not hold it in the same shape.
bool CompareWithRef(TensorFile& ref, const char* name, const int64_t* ne, ggml_type type,
                    const std::vector<char>& bytes, const std::vector<float>& values, JsonObject* t) {
  const int64_t r = ref.Find(name);
  if (r < 0) {
    t->Str("ref_error", "not in the reference");
    return false;
  }
  t->Str("ref_type", ggml_type_name(ref.type(r)));
  if (std::memcmp(ref.ne(r), ne, 4 * sizeof(int64_t)) != 0) {
    t->Str("ref_error", "another shape in the reference");
    return false;
  }
  const std::vector<char> ref_bytes = ref.Bytes(r);
  const std::vector<float> ref_values = Decode(ref.type(r), ref_bytes, ref.n_elements(r));
  if (!values.empty() && !ref_values.empty()) AddComparison(values, ref_values, t);
  t->Bool("bytes_equal", ref.type(r) == type && ref_bytes == bytes);
  return true;
}

}  // namespace

int RunTensors(int argc, char** argv) {
  Args args(argc, argv, {"--ref"}, {});
  if (args.n_positional() != 1) throw UsageError("tensors takes one MODEL");
  const std::string path = args.positional(0);
  JsonObject j;
  j.Str("file", path);
  TensorFile file(path);
  j.Bool("gguf_ok", file.ok());
  if (!file.ok()) {
    j.Str("error", "not a GGUF file ggml reads");
    return Finish(j, false);
  }
  std::optional<TensorFile> ref;
  if (const std::optional<std::string> ref_path = args.Value("--ref")) {
    ref.emplace(*ref_path);
    if (!ref->ok()) {
      j.Str("error", "the reference " + *ref_path + " is not a GGUF file ggml reads");
      return Finish(j, false);
    }
  }
  bool all_valid = true, all_compared = true;
  std::vector<std::string> tensors;
  for (int64_t i = 0; i < file.size(); ++i) {
    const ggml_type type = file.type(i);
    const std::vector<char> bytes = file.Bytes(i);
    JsonObject t;
    t.Str("name", file.name(i));
    t.Str("type", ggml_type_name(type));
    std::vector<std::string> ne;
    for (int d = 0; d < 4; ++d) ne.push_back(std::to_string(file.ne(i)[d]));
    t.SetRaw("ne", JsonArray(ne));
    const bool valid = !bytes.empty() && ggml_validate_row_data(type, bytes.data(), bytes.size());
    t.Bool("valid", valid);
    all_valid = all_valid && valid;
    const std::vector<float> values = valid ? Decode(type, bytes, file.n_elements(i)) : std::vector<float>{};
    if (!values.empty()) AddStats(values, &t);
    if (ref) all_compared = CompareWithRef(*ref, file.name(i), file.ne(i), type, bytes, values, &t) && all_compared;
    tensors.push_back(t.Dump());
  }
  j.SetRaw("tensors", JsonArray(tensors));
  j.Bool("all_valid", all_valid);
  if (ref) j.Bool("all_compared", all_compared);
  return Finish(j, true);
}

}  // namespace oracle
