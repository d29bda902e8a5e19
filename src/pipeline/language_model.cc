// Language-model workflows: calibration text, measuring, plans as type rules.
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
  MIXQ_ASSIGN_OR_RETURN(std::string text, tokenizer::ReadTextFile(path));
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

}  // namespace mixq::pipeline
