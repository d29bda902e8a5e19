// MeasureModel: weight-space errors for every tensor and type, real ΔKLD for
// the calibration types, and the per-tensor fit that joins them.
#include "measure/measure.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <random>

#include "base/parallel.h"
#include "engine/engine.h"
#include "measure/cache.h"
#include "measure/calibration.h"
#include "measure/depth_scale.h"
#include "measure/weight_errors.h"

namespace mixq::measure {
namespace {

int64_t Padded(uint64_t n_bytes) { return static_cast<int64_t>(gguf::PaddedBytes(n_bytes)); }

// Every encodable quantized type, less those that need an imatrix when there is none.
std::vector<const formats::Format*> DefaultTypes(bool have_imatrix) {
  std::vector<const formats::Format*> out;
  for (const auto& f : formats::AllFormats()) {
    if (f.quantized && f.can_encode() && (have_imatrix || !f.needs_imatrix)) out.push_back(&f);
  }
  return out;
}

// Asked-for types (candidates or calibration) that cannot be encoded without an imatrix.
Status CheckTypesEncodable(const std::vector<const formats::Format*>& types, bool have_imatrix) {
  for (const formats::Format* f : types) {
    if (f->needs_imatrix && !have_imatrix) {
      return Status::InvalidArgument("type " + std::string(f->name) +
                                     " needs an importance matrix: give --imatrix or leave it out of the types");
    }
  }
  return Status::Ok();
}

// The calibration types: the given ones, else the format table's default
// calibration types when all are candidates, else the lowest candidate and the
// one nearest 4.5 bpw.
std::vector<const formats::Format*> CalibrationTypes(const MeasureOptions& options,
                                                     const std::vector<const formats::Format*>& types) {
  if (!options.calibration_types.empty()) return options.calibration_types;
  std::vector<const formats::Format*> out;
  size_t n_defaults = 0;
  for (const formats::Format& f : formats::AllFormats()) {
    if (!f.default_calibration) continue;
    ++n_defaults;
    if (std::find(types.begin(), types.end(), &f) != types.end()) out.push_back(&f);
  }
  if (out.size() == n_defaults || types.empty()) return out;
  out.clear();
  auto lowest = *std::min_element(types.begin(), types.end(), [](auto a, auto b) { return a->bpw() < b->bpw(); });
  auto middle = *std::min_element(types.begin(), types.end(),
                                  [](auto a, auto b) { return std::abs(a->bpw() - 4.5) < std::abs(b->bpw() - 4.5); });
  out.push_back(lowest);
  if (middle != lowest) out.push_back(middle);
  return out;
}

// Least squares of log K = log g + α log E over the points, α kept in
// [0.5, 2] so that extrapolation to types far from the calibration stays sane.
TensorFit Fit(const std::string& name, const std::vector<std::pair<double, double>>& points) {
  TensorFit fit;
  fit.name = name;
  fit.points = points;
  std::vector<std::pair<double, double>> logs;
  for (auto [e, k] : points) {
    if (e > 0 && k > 0) logs.push_back({std::log(e), std::log(k)});
  }
  if (logs.empty()) {
    fit.gain = 0;
    return fit;
  }
  if (logs.size() >= 2) {
    double mx = 0, my = 0;
    for (auto [x, y] : logs) mx += x, my += y;
    mx /= static_cast<double>(logs.size());
    my /= static_cast<double>(logs.size());
    double sxx = 0, sxy = 0;
    for (auto [x, y] : logs) sxx += (x - mx) * (x - mx), sxy += (x - mx) * (y - my);
    if (sxx > 0) fit.alpha = std::clamp(sxy / sxx, 0.5, 2.0);
  }
  double log_g = 0;
  for (auto [x, y] : logs) log_g += y - fit.alpha * x;
  fit.gain = std::exp(log_g / static_cast<double>(logs.size()));
  return fit;
}

double Predict(const TensorFit& fit, double error) { return error > 0 ? fit.gain * std::pow(error, fit.alpha) : 0; }

struct Context {
  const gguf::GgufFile& file;
  const MeasureOptions& options;
  std::vector<const formats::Format*> types;
  std::vector<const formats::Format*> calibration;
  std::vector<int64_t> probe_layers;  // propagated to the output (every layer for kExact)
};

// The embeddings and the output head are always propagated: the first has no
// layer before it to rerun alone, the second costs no layer pass at all.
bool Propagates(const Context& ctx, int64_t layer, int64_t n_layer) {
  if (layer < 0 || layer >= n_layer) return true;
  return std::find(ctx.probe_layers.begin(), ctx.probe_layers.end(), layer) != ctx.probe_layers.end();
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Where a run's time went (MeasureResult's fields of the same names).
struct Stats {
  double forward_seconds = 0;
  double weight_seconds = 0;
  std::map<std::string, double> type_cpu_seconds;
};

// Measures one tensor: errors and bytes for every fitting type, local
// perturbation and (where propagated) KLD for the calibration types; adds its
// times to `stats`.
Result<TensorRecord> MeasureTensor(const Context& ctx, const gguf::TensorInfo& t, engine::Model& model,
                                   Calibration& calib, Stats& stats) {
  TensorRecord rec;
  rec.name = t.name;
  std::vector<float> w;
  MIXQ_TRY(quantize::TensorToF32(ctx.file, t, &w, ctx.options.n_threads));
  auto imatrix = quantize::TensorImportance(ctx.options.imatrix, t);
  MIXQ_TRY(imatrix);
  const int64_t n_layer = model.config().n_layer;
  const int64_t layer = FirstLayerOf(t.name, n_layer);
  const bool propagate = Propagates(ctx, layer, n_layer);
  const std::vector<float>* importance = imatrix->has_value() ? &**imatrix : nullptr;
  std::vector<const formats::Format*> candidates;
  for (const formats::Format* f : ctx.types) {
    if (formats::RowFits(*f, t.ne[0]) && (!f->needs_imatrix || imatrix->has_value())) candidates.push_back(f);
  }
  // The calibration types are encoded whole: their forward passes run them.
  std::unique_ptr<bool[]> full(new bool[candidates.size()]);
  for (size_t i = 0; i < candidates.size(); ++i) {
    full[i] = std::find(ctx.calibration.begin(), ctx.calibration.end(), candidates[i]) != ctx.calibration.end();
  }
  WeightErrorOptions wopt;
  wopt.method = ctx.options.method;
  wopt.error_rows = ctx.options.error_rows;
  wopt.n_threads = ctx.options.n_threads;
  const auto weight_start = std::chrono::steady_clock::now();
  MIXQ_ASSIGN_OR_RETURN(std::vector<TypeError> errors,
                        WeightErrors(t, w, importance, candidates, {full.get(), candidates.size()}, wopt));
  stats.weight_seconds += SecondsSince(weight_start);
  for (size_t i = 0; i < candidates.size(); ++i) {
    TypeError& e = errors[i];
    stats.type_cpu_seconds[std::string(e.format->name)] += e.cpu_seconds;
    TypeRecord tr;
    tr.type = std::string(e.format->name);
    tr.n_bytes = e.n_bytes;
    tr.error = e.error;
    if (full[i]) {
      const auto start = std::chrono::steady_clock::now();
      MIXQ_TRY(model.SetWeight(t.name, *e.format, std::move(e.bytes)));
      auto p = calib.Perturb(model, layer, propagate);
      model.ClearWeight(t.name);
      stats.forward_seconds += SecondsSince(start);
      MIXQ_TRY(p);
      tr.local = p->local;
      tr.kld = p->kld;
    }
    rec.types.push_back(std::move(tr));
  }
  return rec;
}

// kLinear: the KLD of unpropagated calibrations, from the probes' ratios.
void PredictUnpropagated(std::vector<TensorRecord>& records, int64_t n_layer) {
  DepthScale scale;
  for (const TensorRecord& rec : records) {
    const int64_t layer = FirstLayerOf(rec.name, n_layer);
    if (layer < 0 || layer >= n_layer) continue;
    for (const auto& tr : rec.types) {
      if (tr.kld >= 0) scale.Add(layer, RoleOf(rec.name), tr.type, tr.local, tr.kld);
    }
  }
  for (TensorRecord& rec : records) {
    for (auto& tr : rec.types) {
      if (tr.kld < 0 && tr.local >= 0) {
        tr.kld = scale.Predict(FirstLayerOf(rec.name, n_layer), RoleOf(rec.name), tr.type, tr.local);
      }
    }
  }
}

plan::Unit MakeUnit(const gguf::TensorInfo& t, const TensorRecord& rec, const TensorFit& fit) {
  plan::Unit u;
  u.name = t.name;
  u.tensors = {t.name};
  u.n_weights = t.n_elems();
  if (!t.format->quantized) u.options.push_back({std::string(t.format->name), Padded(t.n_bytes), 0.0});
  for (const auto& tr : rec.types) {
    if (tr.type == t.format->name) continue;
    u.options.push_back({tr.type, Padded(tr.n_bytes), Predict(fit, tr.error)});
  }
  return u;
}

}  // namespace

Result<MeasureResult> MeasureModel(const gguf::GgufFile& file, std::span<const int32_t> tokens,
                                   const MeasureOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const bool have_imatrix = options.imatrix != nullptr;
  MIXQ_TRY(CheckTypesEncodable(options.types, have_imatrix));
  MIXQ_TRY(CheckTypesEncodable(options.calibration_types, have_imatrix));
  Context ctx{file, options, options.types.empty() ? DefaultTypes(have_imatrix) : options.types, {}, {}};
  ctx.calibration = CalibrationTypes(options, ctx.types);
  auto model = engine::Model::Load(file, options.load);
  MIXQ_TRY(model);
  const int64_t n_layer = model->config().n_layer;
  ctx.probe_layers = ProbeLayers(
      n_layer, options.scheme == CalibrationScheme::kExact ? static_cast<int>(n_layer) : options.probe_layers);

  MeasurementCache cache(options.cache_path, MeasureCacheKey(file, tokens, options, ctx.types, ctx.calibration));
  MIXQ_TRY(cache.Load(options.on_note));
  std::optional<Calibration> calib;

  std::vector<const gguf::TensorInfo*> units;
  for (const auto& t : file.tensors()) {
    if (quantize::IsQuantizable(t)) units.push_back(&t);
  }
  if (options.imatrix != nullptr) {
    auto note = quantize::CheckImatrixCoverage(*options.imatrix, units);
    MIXQ_TRY(note);
    if (!note->empty() && options.on_note) options.on_note(*note);
  }
  std::vector<TensorRecord> records;
  Stats stats;
  for (size_t i = 0; i < units.size(); ++i) {
    const gguf::TensorInfo& t = *units[i];
    if (options.on_progress) options.on_progress(i, units.size(), t.name);
    const TensorRecord* rec = cache.Find(t.name);
    if (rec == nullptr) {
      if (!calib) {
        const auto build_start = std::chrono::steady_clock::now();
        auto c = Calibration::Build(*model, tokens, options);
        MIXQ_TRY(c);
        calib.emplace(std::move(c).value());
        stats.forward_seconds += SecondsSince(build_start);
      }
      auto fresh = MeasureTensor(ctx, t, *model, *calib, stats);
      MIXQ_TRY(fresh);
      MIXQ_TRY(cache.Append(*fresh));
      rec = cache.Find(t.name);
    }
    records.push_back(*rec);
  }
  if (options.on_progress) options.on_progress(units.size(), units.size(), "done");
  PredictUnpropagated(records, n_layer);

  MeasureResult result;
  result.measurement.model = file.path();
  result.measurement.cost_model =
      "predicted mean KLD (nats/token) of the model output: g_t * E^alpha_t per tensor, E = importance-weighted "
      "squared weight error, g/alpha fitted to single-tensor KLD (docs/measure.md)";
  for (size_t i = 0; i < units.size(); ++i) {
    std::vector<std::pair<double, double>> points;
    for (const auto& tr : records[i].types) {
      if (tr.kld >= 0) points.push_back({tr.error, tr.kld});
    }
    result.fits.push_back(Fit(units[i]->name, points));
    result.measurement.units.push_back(MakeUnit(*units[i], records[i], result.fits.back()));
  }

  quantize::QuantizeOptions qopt;
  qopt.imatrix = options.imatrix;
  qopt.imatrix_path = options.imatrix_path;
  auto header = quantize::MaxHeaderBytes(file, qopt);
  MIXQ_TRY(header);
  result.measurement.fixed_n_bytes = static_cast<int64_t>(*header);
  for (const auto& t : file.tensors()) {
    if (quantize::IsQuantizable(t)) continue;
    MIXQ_ASSIGN_OR_RETURN(const uint64_t n_bytes,
                          gguf::TensorDataBytes({t.name, t.ne, t.n_dims, quantize::KeptFormat(t)}));
    result.measurement.fixed_n_bytes += Padded(n_bytes);
    result.measurement.fixed_tensor_n_bytes += static_cast<int64_t>(n_bytes);
    result.measurement.fixed_n_weights += t.n_elems();
  }
  MIXQ_TRY(plan::Validate(result.measurement));
  result.n_forward_layers = calib ? calib->layer_passes() : 0;
  result.forward_seconds = stats.forward_seconds;
  result.weight_seconds = stats.weight_seconds;
  result.type_cpu_seconds = std::move(stats.type_cpu_seconds);
  result.seconds = SecondsSince(start);
  return result;
}

Result<ValidationResult> ValidateMixes(const gguf::GgufFile& file, std::span<const int32_t> tokens,
                                       const MeasureResult& measured, const MeasureOptions& options, int n_mixes,
                                       uint64_t seed) {
  auto model = engine::Model::Load(file, options.load);
  MIXQ_TRY(model);
  auto calib = Calibration::Build(*model, tokens, options);
  MIXQ_TRY(calib);
  std::mt19937_64 rng(seed);
  ValidationResult out;
  for (int m = 0; m < n_mixes; ++m) {
    // Each mix centres on a different size: options are drawn near a random
    // quantile of each unit's options sorted by bytes.
    const double centre = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    MixCheck check;
    int64_t bytes = measured.measurement.fixed_tensor_n_bytes, weights = measured.measurement.fixed_n_weights;
    for (const auto& unit : measured.measurement.units) {
      std::vector<const plan::Option*> opts;
      for (const auto& o : unit.options) opts.push_back(&o);
      std::sort(opts.begin(), opts.end(), [](auto a, auto b) { return a->n_bytes < b->n_bytes; });
      const double jitter = std::normal_distribution<double>(0.0, 0.25)(rng);
      const double q = std::clamp(centre + jitter, 0.0, 1.0);
      const plan::Option& o = *opts[static_cast<size_t>(std::lround(q * static_cast<double>(opts.size() - 1)))];
      check.predicted += o.cost;
      const gguf::TensorInfo* t = file.FindTensor(unit.name);
      const formats::Format* f = formats::FindFormatByName(o.type);
      bytes += o.n_bytes;
      weights += unit.n_weights;
      if (f == t->format) continue;
      std::vector<float> w;
      MIXQ_TRY(quantize::TensorToF32(file, *t, &w, options.n_threads));
      auto imp = quantize::TensorImportance(options.imatrix, *t);
      MIXQ_TRY(imp);
      std::vector<uint8_t> enc;
      MIXQ_TRY(quantize::QuantizeTensor(*t, *f, options.method, w, imp->has_value() ? &**imp : nullptr, &enc,
                                        options.n_threads));
      MIXQ_TRY(model->SetWeight(t->name, *f, std::move(enc)));
    }
    auto kld = calib->Kld(*model, -1);
    MIXQ_TRY(kld);
    model->ClearAllWeights();
    check.measured = *kld;
    check.bpw = 8.0 * static_cast<double>(bytes) / static_cast<double>(weights);
    out.mixes.push_back(check);
  }
  // Spearman rank correlation and the median measured/predicted ratio.
  auto ranks = [&](auto key) {
    std::vector<size_t> idx(out.mixes.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return key(out.mixes[a]) < key(out.mixes[b]); });
    std::vector<double> r(idx.size());
    for (size_t i = 0; i < idx.size(); ++i) r[idx[i]] = static_cast<double>(i);
    return r;
  };
  auto rp = ranks([](const MixCheck& c) { return c.predicted; });
  auto rm = ranks([](const MixCheck& c) { return c.measured; });
  const double n = static_cast<double>(out.mixes.size());
  double d2 = 0;
  for (size_t i = 0; i < rp.size(); ++i) d2 += (rp[i] - rm[i]) * (rp[i] - rm[i]);
  out.spearman = n > 1 ? 1.0 - 6.0 * d2 / (n * (n * n - 1.0)) : 0.0;
  std::vector<double> ratios;
  for (const auto& c : out.mixes) {
    if (c.predicted > 0) ratios.push_back(c.measured / c.predicted);
  }
  if (!ratios.empty()) {
    std::nth_element(ratios.begin(), ratios.begin() + static_cast<long>(ratios.size() / 2), ratios.end());
    out.median_ratio = ratios[ratios.size() / 2];
  }
  return out;
}

}  // namespace mixq::measure
