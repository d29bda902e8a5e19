// Language-model workflows: calibration text, measuring, plans as type rules.
#include "base/parallel.h"
#include "base/text_file.h"
#include "pipeline/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace mixq::pipeline {

Result<TextTokens> TokenizeText(const gguf::GgufFile& model, const std::string& text) {
  MIXQ_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::FromGguf(model));
  TextTokens out;
  out.tokens = engine::TokenizeForEval(tok, text);
  out.bos_id = tok.add_bos() ? tok.bos_id() : -1;
  return out;
}

Result<TextTokens> TokenizeTextFile(const gguf::GgufFile& model, const std::string& path) {
  MIXQ_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  return TokenizeText(model, text);
}

Result<measure::MeasureResult> MeasureLanguageModel(const gguf::GgufFile& file, std::span<const int32_t> tokens,
                                                    measure::MeasureOptions options, const Hooks& hooks) {
  options.on_progress = [&](size_t done, size_t total, const std::string& what) {
    hooks.Progress("measure", done, total, what);
  };
  options.on_note = [&](const std::string& note) { hooks.Note(note); };
  auto result = measure::MeasureModel(file, tokens, options);
  hooks.StageDone("measure");
  return result;
}

Result<quantize::TypeRules> RulesFromPlan(const plan::Plan& plan, const gguf::GgufFile& model) {
  quantize::TypeRules rules;
  MIXQ_ASSIGN_OR_RETURN(rules.exact, quantize::PlanTypes(plan, model.tensors(), quantize::ProfileOf(model)));
  return rules;
}

Result<quantize::QuantizeReport> QuantizeLanguageModel(QuantizeRequest request, const Hooks& hooks) {
  MIXQ_ASSIGN_OR_RETURN(auto input, gguf::GgufFile::Open(request.input));
  quantize::QuantizeOptions& options = request.options;
  if (!request.plan.empty()) {
    MIXQ_ASSIGN_OR_RETURN(plan::Plan p, plan::LoadPlan(request.plan));
    auto from_plan = RulesFromPlan(p, input);
    MIXQ_TRY(from_plan.status().WithContext("plan '" + request.plan + "'"));
    options.rules.exact = std::move(from_plan->exact);
  }
  std::optional<quantize::Imatrix> imatrix;
  if (!request.imatrix.empty()) {
    MIXQ_ASSIGN_OR_RETURN(imatrix, quantize::LoadImatrix(request.imatrix));
    options.imatrix = &*imatrix;
    options.imatrix_path = request.imatrix;
    hooks.Note("imatrix: " + std::to_string(imatrix->entries.size()) + " entries from " + request.imatrix);
  }
  // The covariance passes run the model through the engine; it outlives the quantization.
  std::optional<engine::Model> model;
  std::unique_ptr<quantize::CovarianceSource> covariances;
  if (!request.text.empty()) {
    MIXQ_ASSIGN_OR_RETURN(model, engine::Model::Load(input, request.device));
    MIXQ_ASSIGN_OR_RETURN(TextTokens text, TokenizeTextFile(input, request.text));
    engine::CovarianceOptions co;
    co.n_ctx = request.ctx;
    co.n_chunks = request.chunks;
    co.n_threads = ResolveThreadCount(options.n_threads);
    co.bos_id = text.bos_id;
    MIXQ_ASSIGN_OR_RETURN(covariances, engine::LayerCovariances(*model, text.tokens, co));
    options.covariances = covariances.get();
  }
  options.on_progress = [&](size_t done, size_t total, const std::string& name) {
    hooks.Progress("quantize", done, total, name);
  };
  options.on_note = [&](const std::string& note) { hooks.Note(note); };
  auto report = quantize::QuantizeModel(input, request.output, options);
  hooks.StageDone("quantize");
  return report;
}

}  // namespace mixq::pipeline
