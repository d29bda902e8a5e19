// How the engine tests decide that mixq's evaluation agrees with llama.cpp's.
//
// Both sides score the same positions, so each statistic (NLL, KLD against the
// F16 reference, same top token) is compared position by position, and the
// mean of the paired differences is judged against its own standard error.
// Which kernels llama.cpp runs depends on the CPU (its backend variants round
// and sum differently), and one flipped activation rounding moves the
// positions after it in the same chunk, so a constant bound picked on one
// machine fails on another. The standard error uses batch means over
// consecutive positions of a chunk, so that this correlation between
// neighbours does not make it too small.
#ifndef MIXQ_TESTS_ENGINE_AGREEMENT_H_
#define MIXQ_TESTS_ENGINE_AGREEMENT_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace mixq::engine::test {

// Per scored position, chunk after chunk.
struct PositionScores {
  std::vector<double> nll;       // -log q(next token)
  std::vector<double> kld;       // KL(reference || q)
  std::vector<double> same_top;  // 1 when argmax q == argmax reference
};

// log-softmax of one row of logits, in double.
inline std::vector<double> LogSoftmax(const float* logits, int64_t n) {
  double max = logits[0];
  for (int64_t j = 1; j < n; ++j) max = std::max(max, double(logits[j]));
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(double(logits[j]) - max);
  const double log_z = max + std::log(sum);
  std::vector<double> lp(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) lp[j] = double(logits[j]) - log_z;
  return lp;
}

inline int64_t ArgMax(const std::vector<double>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); }

// Scores one position of a candidate against the reference's logits.
inline void AddPosition(const float* reference, const float* candidate, int64_t n_vocab, int32_t next,
                        PositionScores* out) {
  const std::vector<double> p = LogSoftmax(reference, n_vocab);
  const std::vector<double> q = LogSoftmax(candidate, n_vocab);
  double kld = 0;
  for (int64_t j = 0; j < n_vocab; ++j) kld += std::exp(p[j]) * (p[j] - q[j]);
  out->nll.push_back(-q[next]);
  out->kld.push_back(kld);
  out->same_top.push_back(ArgMax(p) == ArgMax(q) ? 1.0 : 0.0);
}

struct PairedDiff {
  double mean = 0;       // mean of a - b
  double std_error = 0;  // its standard error by batch means
  int64_t n_batches = 0;
};

// a and b hold the same positions, n_chunks runs of `per_chunk` each. Each
// chunk is cut into batches of `batch` consecutive positions (the remainder
// joins the chunk's last batch); the standard error is that of the batch means.
inline PairedDiff PairedDifference(const std::vector<double>& a, const std::vector<double>& b, int64_t per_chunk,
                                   int64_t batch) {
  PairedDiff d;
  std::vector<double> means;
  const int64_t n = static_cast<int64_t>(std::min(a.size(), b.size()));
  for (int64_t c0 = 0; c0 + per_chunk <= n; c0 += per_chunk) {
    const int64_t n_batches = std::max<int64_t>(1, per_chunk / batch);
    for (int64_t i = 0; i < n_batches; ++i) {
      const int64_t begin = c0 + i * batch;
      const int64_t end = i + 1 == n_batches ? c0 + per_chunk : begin + batch;
      double sum = 0;
      for (int64_t k = begin; k < end; ++k) sum += a[k] - b[k];
      means.push_back(sum / double(end - begin));
    }
  }
  d.n_batches = static_cast<int64_t>(means.size());
  if (means.empty()) return d;
  double sum = 0;
  for (double m : means) sum += m;
  d.mean = sum / double(means.size());
  if (means.size() < 2) return d;
  double ss = 0;
  for (double m : means) ss += (m - d.mean) * (m - d.mean);
  d.std_error = std::sqrt(ss / double(means.size() - 1) / double(means.size()));
  return d;
}

// |mean| within `sigmas` standard errors plus `margin`, a difference too small
// to matter in practice (a systematic gap of that size is accepted however
// many positions are scored). Returns "" or what failed.
inline std::string JudgeAgreement(const char* what, const PairedDiff& d, double sigmas, double margin) {
  const double bound = sigmas * d.std_error + margin;
  if (std::fabs(d.mean) <= bound) return "";
  return std::string(what) + ": mean difference " + std::to_string(d.mean) + " outside ±" + std::to_string(bound) +
         " (" + std::to_string(sigmas) + " × stderr " + std::to_string(d.std_error) + " + " + std::to_string(margin) +
         ")\n";
}

}  // namespace mixq::engine::test

#endif  // MIXQ_TESTS_ENGINE_AGREEMENT_H_
