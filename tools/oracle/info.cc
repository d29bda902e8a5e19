// info, types and tokenize: what llama.cpp makes of a file, of ggml's types
// and of a text.
#include <map>

#include "common.h"

namespace oracle {

int RunInfo(int argc, char** argv) {
  Args args(argc, argv, {}, {});
  if (args.n_positional() != 1) throw UsageError("info takes one MODEL");
  const std::string path = args.positional(0);
  JsonObject j;
  j.Str("file", path);
  GgufPtr gguf = OpenGguf(path);
  j.Bool("gguf_ok", gguf != nullptr);
  if (gguf) {
    j.Int("gguf_version", gguf_get_version(gguf.get()));
    j.Int("alignment", static_cast<int64_t>(gguf_get_alignment(gguf.get())));
    j.Int("n_kv", gguf_get_n_kv(gguf.get()));
    std::vector<std::string> tensors;
    std::map<int, int64_t> type_counts;  // by ggml type id
    for (int64_t i = 0; i < gguf_get_n_tensors(gguf.get()); ++i) {
      const ggml_type type = gguf_get_tensor_type(gguf.get(), i);
      JsonObject t;
      t.Str("name", gguf_get_tensor_name(gguf.get(), i));
      t.Str("type", ggml_type_name(type));
      t.Int("bytes", static_cast<int64_t>(gguf_get_tensor_size(gguf.get(), i)));
      tensors.push_back(t.Dump());
      ++type_counts[type];
    }
    j.SetRaw("tensors", JsonArray(tensors));
    JsonObject counts;
    for (const auto& [type, n] : type_counts) counts.Int(ggml_type_name(static_cast<ggml_type>(type)), n);
    j.SetRaw("type_counts", counts.Dump());
  }
  Stopwatch load;
  ModelPtr model = gguf ? LoadModel(path, /*vocab_only=*/false) : nullptr;
  j.Bool("load_ok", model != nullptr);
  if (!model) {
    j.Str("error", gguf ? "llama.cpp could not load the model: " + LastLlamaError() : "not a GGUF file ggml reads");
    return Finish(j, false);
  }
  j.Secs("load_s", load.Seconds());
  AddModelFields(*model, &j);
  return Finish(j, true);
}

int RunTypes(int argc, char** argv) {
  Args args(argc, argv, {}, {});
  if (args.n_positional() != 0) throw UsageError("types takes no arguments");
  JsonObject j;
  j.Str("system_info", llama_print_system_info());
  std::vector<std::string> types;
  for (int id = 0; id < GGML_TYPE_COUNT; ++id) {
    const ggml_type type = static_cast<ggml_type>(id);
    const ggml_type_traits* traits = ggml_get_type_traits(type);
    if (traits->blck_size == 0) continue;  // a type removed from ggml
    JsonObject t;
    t.Int("id", id);
    t.Str("name", traits->type_name);
    t.Int("blck_size", traits->blck_size);
    t.Int("type_size", static_cast<int64_t>(traits->type_size));
    t.Bool("quantized", traits->is_quantized);
    t.Bool("to_float", traits->to_float != nullptr);
    t.Bool("needs_imatrix", ggml_quantize_requires_imatrix(type));
    types.push_back(t.Dump());
  }
  j.SetRaw("types", JsonArray(types));
  return Finish(j, true);
}

int RunTokenize(int argc, char** argv) {
  Args args(argc, argv, {"--text-file", "--out"}, {"--no-bos"});
  if (args.n_positional() != 1 || !args.Has("--text-file")) throw UsageError("tokenize takes MODEL --text-file F");
  const std::string path = args.positional(0), text_file = *args.Value("--text-file");
  JsonObject j;
  j.Str("file", path);
  ModelPtr model = LoadModel(path, /*vocab_only=*/true);
  j.Bool("load_ok", model != nullptr);
  if (!model) {
    j.Str("error", "llama.cpp could not load the vocabulary: " + LastLlamaError());
    return Finish(j, false);
  }
  const llama_vocab* vocab = llama_model_get_vocab(model.get());
  j.Str("text_file", text_file);
  const std::optional<std::string> text = ReadText(text_file);
  j.Bool("ok", text.has_value());
  if (!text) {
    j.Str("error", "cannot read " + text_file);
    return Finish(j, false);
  }
  const bool add_special = !args.Has("--no-bos");
  j.Int("n_bytes", static_cast<int64_t>(text->size()));
  j.Bool("add_special", add_special);
  j.Bool("vocab_add_bos", llama_vocab_get_add_bos(vocab));
  j.Int("bos", llama_vocab_bos(vocab));
  j.Int("n_vocab", llama_vocab_n_tokens(vocab));
  Stopwatch clock;
  const std::vector<int32_t> tokens = Tokenize(vocab, *text, add_special);
  j.Secs("tokenize_s", clock.Seconds());
  j.Int("n_tokens", static_cast<int64_t>(tokens.size()));
  if (const std::optional<std::string> out = args.Value("--out")) {
    const char* bytes = reinterpret_cast<const char*>(tokens.data());
    const bool ok = WriteFile(*out, std::vector<char>(bytes, bytes + tokens.size() * sizeof(int32_t)));
    j.Str("out", *out);
    j.Bool("out_ok", ok);
    if (!ok) j.Str("error", "cannot write " + *out);
    return Finish(j, ok);
  }
  std::vector<std::string> ids;
  for (int32_t t : tokens) ids.push_back(std::to_string(t));
  j.SetRaw("tokens", JsonArray(ids));
  return Finish(j, true);
}

}  // namespace oracle
