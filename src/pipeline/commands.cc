// Language-model workflows of single commands: eval and imatrix.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "base/parallel.h"
#include "base/text_file.h"
#include "pipeline/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace mixq::pipeline {
namespace {

// An engine progress callback reporting `stage` with the chunk and the
// tokens per second since `start`.
std::function<void(int64_t, int64_t, int64_t)> ChunkProgress(const Hooks& hooks, const std::string& stage) {
  const auto start = std::chrono::steady_clock::now();
  return [&hooks, stage, start](int64_t done, int64_t total, int64_t n_tokens) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    char detail[96];
    std::snprintf(detail, sizeof(detail), "chunk %lld/%lld, %.0f tokens/s", static_cast<long long>(done),
                  static_cast<long long>(total), secs > 0 ? static_cast<double>(n_tokens) / secs : 0.0);
    hooks.Progress(stage, static_cast<uint64_t>(done), static_cast<uint64_t>(total), detail);
  };
}

}  // namespace

Result<engine::EvalResult> EvaluateLanguageModel(const EvalRequest& request, const Hooks& hooks) {
  MIXQ_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(request.model));
  MIXQ_ASSIGN_OR_RETURN(auto model, engine::Model::Load(file, request.load));
  MIXQ_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::FromGguf(file));
  engine::EvalOptions eo;
  eo.n_ctx = request.ctx;
  eo.n_chunks = request.chunks;
  eo.n_threads = ResolveThreadCount(request.threads);
  eo.bos_id = tok.add_bos() ? tok.bos_id() : -1;
  eo.save_logits = request.save_logits;
  eo.activations = request.activations;
  std::vector<int32_t> tokens;
  if (!request.text.empty()) {
    MIXQ_ASSIGN_OR_RETURN(std::string text, ReadTextFile(request.text));
    tokens = engine::TokenizeForEval(tok, text);
  }
  eo.on_progress = ChunkProgress(hooks, "eval");
  Result<engine::EvalResult> result = Status::Internal("eval did not run");
  if (!request.base_logits.empty()) {
    MIXQ_ASSIGN_OR_RETURN(auto base, engine::BaseLogits::Open(request.base_logits));
    if (!tokens.empty()) {
      const size_t n = base.tokens().size();
      if (tokens.size() < n || !std::equal(base.tokens().begin(), base.tokens().end(), tokens.begin())) {
        return Status::Corruption("--text does not tokenize to the tokens stored in " + request.base_logits +
                                  "; drop --text to reuse the stored tokens");
      }
    }
    result = engine::EvaluateVsLogits(model, base, eo);
  } else if (!request.base.empty()) {
    MIXQ_ASSIGN_OR_RETURN(auto base_file, gguf::GgufFile::Open(request.base));
    MIXQ_ASSIGN_OR_RETURN(auto base_model, engine::Model::Load(base_file, request.load));
    result = engine::EvaluateVsModel(model, base_model, tokens, eo);
  } else {
    result = engine::Evaluate(model, tokens, eo);
  }
  hooks.StageDone("eval");
  return result;
}

Result<ImatrixResult> CollectImatrixToFile(const ImatrixRequest& request, const Hooks& hooks) {
  MIXQ_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(request.model));
  MIXQ_ASSIGN_OR_RETURN(auto model, engine::Model::Load(file, request.load));
  MIXQ_ASSIGN_OR_RETURN(TextTokens text, TokenizeTextFile(file, request.text));
  engine::ImatrixOptions io;
  io.n_ctx = request.ctx;
  io.n_chunks = request.chunks;
  io.n_threads = ResolveThreadCount(request.threads);
  io.bos_id = text.bos_id;
  io.include_output = request.include_output;
  io.dataset = request.text;
  const auto start = std::chrono::steady_clock::now();
  io.on_progress = ChunkProgress(hooks, "imatrix");
  auto im = engine::CollectImatrix(model, text.tokens, io);
  hooks.StageDone("imatrix");
  MIXQ_TRY(im);
  MIXQ_TRY(quantize::SaveImatrix(*im, request.output));
  ImatrixResult out;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.imatrix = std::move(im).value();
  return out;
}

}  // namespace mixq::pipeline
