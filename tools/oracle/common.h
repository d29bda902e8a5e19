// What the oracle's commands share: command-line parsing, loading llama.cpp's
// CPU backend and models, llama.cpp's log, text files and timing.
#ifndef MIXQ_TOOLS_ORACLE_COMMON_H_
#define MIXQ_TOOLS_ORACLE_COMMON_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gguf.h"
#include "json.h"
#include "llama.h"

namespace oracle {

// A command line the command cannot run: exit code 2, message on stderr.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The options after the command name: positional arguments, `--name VALUE`
// options (repeatable) and `--name` switches, each command naming its own.
class Args {
 public:
  Args(int argc, char** argv, const std::vector<std::string>& valued, const std::vector<std::string>& switches);

  size_t n_positional() const { return positional_.size(); }
  const std::string& positional(size_t i) const { return positional_.at(i); }
  bool Has(const std::string& name) const { return values_.contains(name); }
  std::optional<std::string> Value(const std::string& name) const;
  std::vector<std::string> Values(const std::string& name) const;
  // The values of several options, in command-line order, each with its option's name.
  std::vector<std::pair<std::string, std::string>> InOrder(const std::vector<std::string>& names) const;
  // The value as a positive integer, or `fallback` when the option is absent.
  int64_t Positive(const std::string& name, int64_t fallback) const;

 private:
  std::vector<std::string> positional_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::pair<std::string, std::string>> in_order_;
};

// Loads the CPU backend (from $GGUF_ORACLE_BACKEND_DIR, or bins/ beside the
// executable) and routes llama.cpp's log to stderr: warnings and errors, or
// everything with GGUF_ORACLE_VERBOSE=1.
void InitLlama();
// The last error llama.cpp logged, on one line ("" when none).
std::string LastLlamaError();

struct ModelDeleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;

struct GgufDeleter {
  void operator()(gguf_context* g) const { gguf_free(g); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufDeleter>;

// A GGUF file's metadata and tensor table, as ggml's parser reads them (null when it rejects the file).
GgufPtr OpenGguf(const std::string& path);

// Loads a model with ggml's tensor data checks on, or its vocabulary only.
ModelPtr LoadModel(const std::string& path, bool vocab_only);
// desc, n_params, size_bytes, n_vocab, n_embd, n_layer, n_ctx_train, vocab_type.
void AddModelFields(const llama_model& model, JsonObject* j);

// A UTF-8 text file as llama-perplexity reads it: all of it but one trailing '\n'.
std::optional<std::string> ReadText(const std::string& path);
// llama_tokenize over the whole text, special tokens not parsed.
std::vector<int32_t> Tokenize(const llama_vocab* vocab, const std::string& text, bool add_special);

bool WriteFile(const std::string& path, const std::vector<char>& bytes);
int64_t FileSize(const std::string& path);

class Stopwatch {
 public:
  double Seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Prints the command's JSON on stdout and returns its exit code (0 ok, 1 failed).
int Finish(const JsonObject& j, bool ok);

int RunInfo(int argc, char** argv);
int RunTypes(int argc, char** argv);
int RunTokenize(int argc, char** argv);
int RunEval(int argc, char** argv);
int RunTensors(int argc, char** argv);
int RunQuantize(int argc, char** argv);

}  // namespace oracle

#endif  // MIXQ_TOOLS_ORACLE_COMMON_H_
