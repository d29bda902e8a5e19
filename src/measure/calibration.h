// Internal: the cached state of a calibration run (base log-probs and the
// hidden states entering every layer), and what a modified model does to it:
// the local perturbation of one layer's output, and the KLD at the output.
#ifndef MIXQ_MEASURE_CALIBRATION_H_
#define MIXQ_MEASURE_CALIBRATION_H_

#include <span>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "measure/measure.h"

namespace mixq::measure {

struct Perturbation {
  // Mean over all calibration tokens of ||h' - h||² / ||h||², h the residual
  // stream leaving the layer (the embeddings for layer -1); 0 for the output
  // head, which has no residual stream after it.
  double local = 0;
  double kld = -1;  // mean KLD(base || model) over the scored rows; < 0 when not propagated
};

class Calibration {
 public:
  // Runs the unmodified model once over the chunks and caches what reruns need.
  static Result<Calibration> Build(engine::Model& model, std::span<const int32_t> tokens,
                                   const MeasureOptions& options);

  // Mean KLD(base || model) over the scored rows, rerunning only the layers
  // from `first_layer` (-1: from the embeddings, n_layer: only the output).
  Result<double> Kld(engine::Model& model, int64_t first_layer);

  // Reruns only `layer` (-1: the embedding lookup, n_layer: nothing) and
  // measures the local perturbation; with `propagate`, continues to the
  // output and measures the KLD too. Costs 1 layer pass, or
  // n_layer - layer with `propagate`.
  Result<Perturbation> Perturb(engine::Model& model, int64_t layer, bool propagate);

  int64_t layer_passes() const { return layer_passes_; }

 private:
  // Loads the cached input of `first_layer` (-1: embeds the tokens) and runs
  // up to `last_layer`.
  Status RunFrom(engine::Model& model, int64_t first_layer, int64_t last_layer);
  Status RunLayers(engine::Model& model, int64_t first_layer, int64_t last_layer);
  // Relative squared change of the hidden states against the cached ones
  // entering layer `boundary`.
  double LocalChange(int64_t boundary) const;
  Result<double> KldOfHidden(engine::Model& model);

  int64_t n_ctx_ = 0, n_chunks_ = 0, n_layer_ = 0, n_embd_ = 0, n_vocab_ = 0;
  int n_threads_ = 2;
  std::vector<int32_t> tokens_;                   // n_chunks * n_ctx, BOS substituted
  std::vector<std::vector<float>> layer_inputs_;  // n_layer + 1 entries
  std::vector<float> base_lp_;                    // scored rows x n_vocab log-probs
  std::vector<float> hidden_, gathered_, logits_;
  int64_t layer_passes_ = 0;
};

// The block of a tensor (engine::DescribeWeight); -1 for the token
// embeddings, n_layer for the output head and names outside the blocks.
int64_t FirstLayerOf(const std::string& tensor, int64_t n_layer);

}  // namespace mixq::measure

#endif  // MIXQ_MEASURE_CALIBRATION_H_
