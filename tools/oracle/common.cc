#include "common.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "ggml-backend.h"

namespace oracle {

Args::Args(int argc, char** argv, const std::vector<std::string>& valued, const std::vector<std::string>& switches) {
  auto contains = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (!a.starts_with("--")) {
      positional_.push_back(a);
    } else if (contains(switches, a)) {
      values_[a].push_back("");
    } else if (contains(valued, a)) {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      values_[a].push_back(argv[++i]);
      in_order_.emplace_back(a, argv[i]);
    } else {
      throw UsageError("unknown option " + a);
    }
  }
}

std::optional<std::string> Args::Value(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Args::Values(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::vector<std::pair<std::string, std::string>> Args::InOrder(const std::vector<std::string>& names) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : in_order_) {
    if (std::find(names.begin(), names.end(), item.first) != names.end()) out.push_back(item);
  }
  return out;
}

int64_t Args::Positive(const std::string& name, int64_t fallback) const {
  const std::optional<std::string> v = Value(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long long n = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || n <= 0) throw UsageError(name + " needs a positive integer, got '" + *v + "'");
  return n;
}

namespace {

bool verbose_log = false;
ggml_log_level last_level = GGML_LOG_LEVEL_INFO;
std::string last_error;

void LogToStderr(ggml_log_level level, const char* text, void* /*user_data*/) {
  if (level != GGML_LOG_LEVEL_CONT) {
    last_level = level;
    if (level == GGML_LOG_LEVEL_ERROR) last_error.clear();
  }
  if (verbose_log || last_level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
  if (last_level == GGML_LOG_LEVEL_ERROR) last_error += text;
}

std::string ExecutableDir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

}  // namespace

void InitLlama() {
  const char* v = std::getenv("GGUF_ORACLE_VERBOSE");
  verbose_log = v != nullptr && std::string(v) == "1";
  llama_log_set(LogToStderr, nullptr);
  const char* pinned = std::getenv("GGUF_ORACLE_BACKEND_DIR");
  const std::string dir = pinned && *pinned ? pinned : ExecutableDir() + "/bins";
  ggml_backend_load_all_from_path(dir.c_str());
  llama_backend_init();
}

std::string LastLlamaError() {
  std::string e = last_error;
  std::replace(e.begin(), e.end(), '\n', ' ');
  while (!e.empty() && e.back() == ' ') e.pop_back();
  return e;
}

GgufPtr OpenGguf(const std::string& path) {
  gguf_init_params p{/*no_alloc=*/true, /*ctx=*/nullptr};
  return GgufPtr(gguf_init_from_file(path.c_str(), p));
}

ModelPtr LoadModel(const std::string& path, bool vocab_only) {
  llama_model_params p = llama_model_default_params();
  p.n_gpu_layers = 0;
  p.vocab_only = vocab_only;
  p.check_tensors = !vocab_only;
  return ModelPtr(llama_model_load_from_file(path.c_str(), p));
}

void AddModelFields(const llama_model& model, JsonObject* j) {
  char desc[256];
  llama_model_desc(&model, desc, sizeof(desc));
  const llama_vocab* vocab = llama_model_get_vocab(&model);
  j->Str("desc", desc);
  j->Int("n_params", static_cast<int64_t>(llama_model_n_params(&model)));
  j->Int("size_bytes", static_cast<int64_t>(llama_model_size(&model)));
  j->Int("n_vocab", llama_vocab_n_tokens(vocab));
  j->Int("n_embd", llama_model_n_embd(&model));
  j->Int("n_layer", llama_model_n_layer(&model));
  j->Int("n_ctx_train", llama_model_n_ctx_train(&model));
  j->Int("vocab_type", llama_vocab_type(vocab));
}

std::optional<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

std::vector<int32_t> Tokenize(const llama_vocab* vocab, const std::string& text, bool add_special) {
  std::vector<int32_t> tokens(text.size() + 2);
  int32_t n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                             static_cast<int32_t>(tokens.size()), add_special, /*parse_special=*/false);
  if (n < 0) {  // more tokens than bytes: -n is the count needed
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                       static_cast<int32_t>(tokens.size()), add_special, false);
  }
  tokens.resize(static_cast<size_t>(std::max(n, 0)));
  return tokens;
}

bool WriteFile(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out.flush());
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(n);
}

int Finish(const JsonObject& j, bool ok) {
  std::printf("%s\n", j.Dump().c_str());
  return ok ? 0 : 1;
}

}  // namespace oracle
