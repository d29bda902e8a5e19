// quantize: llama_model_quantize as llama-quantize runs it, with the same
// options, the same importance-matrix reading and the same metadata, so that
// its output is byte-identical to llama-quantize's for the same arguments.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <string_view>
#include <utility>

#include "common.h"
#include "imatrix.h"

namespace oracle {
namespace {

// llama-quantize's names of the llama_ftype presets.
constexpr std::pair<const char*, llama_ftype> kFtypes[] = {
    {"F32", LLAMA_FTYPE_ALL_F32},
    {"F16", LLAMA_FTYPE_MOSTLY_F16},
    {"BF16", LLAMA_FTYPE_MOSTLY_BF16},
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
    {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
    {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
    {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
    {"Q2_K_S", LLAMA_FTYPE_MOSTLY_Q2_K_S},
    {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S},
    {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L},
    {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S},
    {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S},
    {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
    {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
    {"IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL},
    {"IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS},
    {"IQ3_S", LLAMA_FTYPE_MOSTLY_IQ3_S},
    {"IQ3_M", LLAMA_FTYPE_MOSTLY_IQ3_M},
    {"IQ3_XS", LLAMA_FTYPE_MOSTLY_IQ3_XS},
    {"IQ3_XXS", LLAMA_FTYPE_MOSTLY_IQ3_XXS},
    {"IQ2_XXS", LLAMA_FTYPE_MOSTLY_IQ2_XXS},
    {"IQ2_XS", LLAMA_FTYPE_MOSTLY_IQ2_XS},
    {"IQ2_S", LLAMA_FTYPE_MOSTLY_IQ2_S},
    {"IQ2_M", LLAMA_FTYPE_MOSTLY_IQ2_M},
    {"IQ1_S", LLAMA_FTYPE_MOSTLY_IQ1_S},
    {"IQ1_M", LLAMA_FTYPE_MOSTLY_IQ1_M},
    {"TQ1_0", LLAMA_FTYPE_MOSTLY_TQ1_0},
    {"TQ2_0", LLAMA_FTYPE_MOSTLY_TQ2_0},
    {"MXFP4_MOE", LLAMA_FTYPE_MOSTLY_MXFP4_MOE},
    {"NVFP4", LLAMA_FTYPE_MOSTLY_NVFP4},
    {"Q1_0", LLAMA_FTYPE_MOSTLY_Q1_0},
    {"Q2_0", LLAMA_FTYPE_MOSTLY_Q2_0},
};

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return std::tolower(static_cast<unsigned char>(x)) == std::tolower(y); });
}

llama_ftype ParseFtype(const std::string& name) {
  for (const auto& [n, ftype] : kFtypes) {
    if (EqualsIgnoringCase(n, name)) return ftype;
  }
  throw UsageError("unknown FTYPE '" + name + "'");
}

// A ggml type by its name (q4_K, iq4_xs, f16 ...), case-insensitive.
ggml_type ParseGgmlType(const std::string& name) {
  for (int id = 0; id < GGML_TYPE_COUNT; ++id) {
    const ggml_type type = static_cast<ggml_type>(id);
    if (ggml_get_type_traits(type)->blck_size != 0 && EqualsIgnoringCase(ggml_type_name(type), name)) return type;
  }
  throw UsageError("unknown ggml type '" + name + "'");
}

struct Override {
  std::string pattern;  // lower-cased, as llama-quantize passes it on
  ggml_type type;
};

Override ParseOverride(const std::string& item) {
  const size_t eq = item.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
    throw UsageError("--tensor-type needs REGEX=TYPE, got '" + item + "'");
  }
  std::string pattern = item.substr(0, eq);
  std::transform(pattern.begin(), pattern.end(), pattern.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return {pattern, ParseGgmlType(item.substr(eq + 1))};
}

// The items of --tensor-type and of the --tensor-type-file files (whitespace-separated), in command-line order:
// the first pattern that matches a tensor wins.
std::vector<Override> ParseOverrides(const Args& args) {
  std::vector<Override> overrides;
  for (const auto& [option, value] : args.InOrder({"--tensor-type", "--tensor-type-file"})) {
    if (option == "--tensor-type") {
      overrides.push_back(ParseOverride(value));
      continue;
    }
    std::ifstream in(value);
    if (!in) throw UsageError("cannot read --tensor-type-file " + value);
    for (std::string item; in >> item;) overrides.push_back(ParseOverride(item));
  }
  return overrides;
}

// All-one importance for every tensor of the input: what the IQ types need, with no preference.
Imatrix Ones(const std::string& path) {
  Imatrix im;
  GgufPtr gguf = OpenGguf(path);
  if (!gguf) return im;
  for (int64_t i = 0; i < gguf_get_n_tensors(gguf.get()); ++i) {
    const int64_t* ne = gguf_get_tensor_ne(gguf.get(), i);
    im.entries[gguf_get_tensor_name(gguf.get(), i)] = std::vector<float>(static_cast<size_t>(ne[0] * ne[2]), 1.0f);
  }
  return im;
}

llama_model_kv_override StringKv(const char* key, const std::string& value) {
  llama_model_kv_override kv{};
  kv.tag = LLAMA_KV_OVERRIDE_TYPE_STR;
  std::strncpy(kv.key, key, sizeof(kv.key) - 1);
  std::strncpy(kv.val_str, value.c_str(), sizeof(kv.val_str) - 1);
  return kv;
}

llama_model_kv_override IntKv(const char* key, int64_t value) {
  llama_model_kv_override kv{};
  kv.tag = LLAMA_KV_OVERRIDE_TYPE_INT;
  std::strncpy(kv.key, key, sizeof(kv.key) - 1);
  kv.val_i64 = value;
  return kv;
}

// The quantize.imatrix.* keys llama-quantize records, in its order, ending with the empty key.
std::vector<llama_model_kv_override> ImatrixKvs(const std::string& path, const Imatrix& im) {
  std::vector<llama_model_kv_override> kvs = {StringKv("quantize.imatrix.file", path)};
  if (!im.datasets.empty()) kvs.push_back(StringKv("quantize.imatrix.dataset", im.datasets[0]));
  kvs.push_back(IntKv("quantize.imatrix.entries_count", static_cast<int64_t>(im.entries.size())));
  if (im.chunk_count > 0) kvs.push_back(IntKv("quantize.imatrix.chunks_count", im.chunk_count));
  kvs.push_back(llama_model_kv_override{});
  return kvs;
}

// What llama.cpp wrote: each tensor's type, by name.
std::string WrittenTypes(const std::string& path) {
  JsonObject types;
  if (GgufPtr gguf = OpenGguf(path)) {
    for (int64_t i = 0; i < gguf_get_n_tensors(gguf.get()); ++i) {
      types.Str(gguf_get_tensor_name(gguf.get(), i), ggml_type_name(gguf_get_tensor_type(gguf.get(), i)));
    }
  }
  return types.Dump();
}

}  // namespace

int RunQuantize(int argc, char** argv) {
  Args args(argc, argv,
            {"--imatrix", "--tensor-type", "--tensor-type-file", "--output-tensor-type", "--token-embedding-type",
             "--threads"},
            {"--pure", "--imatrix-ones"});
  if (args.n_positional() != 3) throw UsageError("quantize takes IN OUT FTYPE");
  if (args.Has("--imatrix") && args.Has("--imatrix-ones"))
    throw UsageError("--imatrix and --imatrix-ones exclude each other");
  const std::string in = args.positional(0), out = args.positional(1);
  llama_model_quantize_params params = llama_model_quantize_default_params();
  params.ftype = ParseFtype(args.positional(2));
  params.pure = args.Has("--pure");
  params.nthread = static_cast<int32_t>(args.Positive("--threads", 2));
  const std::vector<Override> overrides = ParseOverrides(args);
  const std::optional<std::string> output_type = args.Value("--output-tensor-type");
  const std::optional<std::string> embedding_type = args.Value("--token-embedding-type");
  if (output_type) params.output_tensor_type = ParseGgmlType(*output_type);
  if (embedding_type) params.token_embedding_type = ParseGgmlType(*embedding_type);

  JsonObject j;
  j.Str("in", in);
  j.Str("out", out);
  j.Str("ftype", args.positional(2));
  j.Bool("pure", params.pure);
  j.Bool("imatrix_ones", args.Has("--imatrix-ones"));
  Imatrix im;
  std::vector<llama_model_kv_override> kvs;
  if (const std::optional<std::string> path = args.Value("--imatrix")) {
    j.Str("imatrix", *path);
    if (const std::string error = LoadImatrix(*path, &im); !error.empty()) {
      j.Bool("ok", false);
      j.Str("error", error);
      return Finish(j, false);
    }
    j.Str("imatrix_format", im.format);
    j.Int("imatrix_entries", static_cast<int64_t>(im.entries.size()));
    j.Int("imatrix_chunks", im.chunk_count);
    j.Str("imatrix_dataset", im.datasets.empty() ? "" : im.datasets[0]);
    kvs = ImatrixKvs(*path, im);
    params.kv_overrides = kvs.data();
  } else if (args.Has("--imatrix-ones")) {
    im = Ones(in);
  }
  std::vector<llama_model_imatrix_data> imatrix;
  for (const auto& [name, values] : im.entries) imatrix.push_back({name.c_str(), values.data(), values.size()});
  imatrix.push_back({nullptr, nullptr, 0});
  if (!im.entries.empty()) params.imatrix = imatrix.data();

  std::vector<llama_model_tensor_override> tt;
  std::vector<std::string> listed;
  for (const Override& o : overrides) {
    tt.push_back({o.pattern.c_str(), o.type});
    JsonObject item;
    item.Str("pattern", o.pattern);
    item.Str("type", ggml_type_name(o.type));
    listed.push_back(item.Dump());
  }
  tt.push_back({nullptr, GGML_TYPE_COUNT});
  if (!overrides.empty()) {
    params.tt_overrides = tt.data();
    j.SetRaw("tensor_type_overrides", JsonArray(listed));
  }
  if (output_type) j.Str("output_tensor_type", ggml_type_name(params.output_tensor_type));
  if (embedding_type) j.Str("token_embedding_type", ggml_type_name(params.token_embedding_type));

  Stopwatch clock;
  const bool ok = llama_model_quantize(in.c_str(), out.c_str(), &params) == 0;
  j.Bool("ok", ok);
  j.Secs("secs", clock.Seconds());
  if (!ok) {
    j.Str("error", "llama_model_quantize failed: " + LastLlamaError());
    return Finish(j, false);
  }
  j.Int("out_bytes", FileSize(out));
  j.SetRaw("tensor_types", WrittenTypes(out));
  return Finish(j, true);
}

}  // namespace oracle
