// Base log-probability files: our compact MQBL format (written and read) and
// the oracle's LGT2 raw-logit files (read).
//
// MQBL, little-endian:
//   char magic[4] = "MQBL"; u32 version = 1;
//   u32 n_ctx, n_chunks, n_vocab, first, n_scored, flags (bit 0: BOS at chunk starts)
//   i32 tokens[n_chunks * n_ctx]        the text tokens, before the BOS substitution
//   per scored row (n_chunks * n_scored rows, chunk-major):
//     f32 nll        exact -log p(next token)
//     f32 lp_floor   the most negative log-prob kept (<= 0)
//     i32 argmax     the most likely token
//     u16 code[n_vocab]   log p = lp_floor * code / 65535 before renormalization
// Log-probs below lp_floor (at most kLpFloor) are stored as lp_floor: they
// carry no mass that matters to KLD.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "base/atomic_file.h"
#include "base/byte_reader.h"
#include "base/mapped_file.h"
#include "engine/internal.h"

namespace mixq::engine {
namespace {

constexpr char kMagic[4] = {'M', 'Q', 'B', 'L'};
constexpr char kLgt2Magic[4] = {'L', 'G', 'T', '2'};
constexpr uint32_t kVersion = 1;
constexpr float kLpFloor = -40.0f;
constexpr double kCodeMax = 65535.0;

}  // namespace

void LogSoftmaxRow(const float* logits, int64_t n_vocab, const int32_t target, float* lp, int32_t* argmax,
                   double* nll) {
  int32_t best = 0;
  for (int64_t j = 1; j < n_vocab; ++j) {
    if (logits[j] > logits[best]) best = static_cast<int32_t>(j);
  }
  const float max = logits[best];
  double sum = 0.0;
  for (int64_t j = 0; j < n_vocab; ++j) sum += std::exp(static_cast<double>(logits[j] - max));
  const double lse = std::log(sum);
  for (int64_t j = 0; j < n_vocab; ++j) lp[j] = static_cast<float>(static_cast<double>(logits[j] - max) - lse);
  *argmax = best;
  *nll = lse - static_cast<double>(logits[target] - max);
}

struct BaseLogits::Impl {
  explicit Impl(MappedFile f) : file(std::move(f)) {}
  MappedFile file;
  bool lgt2 = false;
  uint32_t n_ctx = 0, n_chunks = 0, n_vocab = 0, first = 0, n_scored = 0, flags = 0;
  std::vector<int32_t> tokens;
  uint64_t rows_offset = 0;
  uint64_t row_bytes = 0;
};

struct BaseAccess {
  static Status ReadChunk(const BaseLogits& base, int64_t chunk, BaseRows* rows);
};

BaseLogits::BaseLogits(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BaseLogits::BaseLogits(BaseLogits&&) noexcept = default;
BaseLogits& BaseLogits::operator=(BaseLogits&&) noexcept = default;
BaseLogits::~BaseLogits() = default;
int64_t BaseLogits::n_vocab() const { return impl_->n_vocab; }
int64_t BaseLogits::n_ctx() const { return impl_->n_ctx; }
int64_t BaseLogits::n_chunks() const { return impl_->n_chunks; }
bool BaseLogits::bos_at_chunk_start() const { return (impl_->flags & 1) != 0; }
const std::vector<int32_t>& BaseLogits::tokens() const { return impl_->tokens; }

Result<BaseLogits> BaseLogits::Open(const std::string& path) {
  auto mapped = MappedFile::Open(path);
  MIXQ_TRY(mapped);
  auto impl = std::make_unique<Impl>(std::move(mapped).value());
  ByteReader in(impl->file.bytes());
  char magic[4];
  MIXQ_TRY(in.ReadInto(magic, 4).WithContext(path));
  if (std::memcmp(magic, kLgt2Magic, 4) == 0) {
    impl->lgt2 = true;
  } else if (std::memcmp(magic, kMagic, 4) == 0) {
    auto version = in.Read<uint32_t>();
    MIXQ_TRY(version.status().WithContext(path));
    if (*version != kVersion) {
      return Status::NotSupported("base logits file version " + std::to_string(*version) + " (expected " +
                                  std::to_string(kVersion) + "): " + path);
    }
  } else {
    return Status::Corruption("not a base logits file (MQBL or LGT2): " + path);
  }
  uint32_t header[6];
  MIXQ_TRY(in.ReadInto(header, sizeof(header)).WithContext(path));
  Impl& b = *impl;
  b.n_ctx = header[0], b.n_chunks = header[1], b.n_vocab = header[2];
  b.first = header[3], b.n_scored = header[4], b.flags = header[5];
  if (b.n_ctx < 4 || b.n_chunks == 0 || b.n_vocab == 0 || b.first != b.n_ctx / 2 ||
      b.n_scored != b.n_ctx - 1 - b.first) {
    return Status::Corruption("inconsistent base logits header (n_ctx " + std::to_string(b.n_ctx) + ", first " +
                              std::to_string(b.first) + ", n_scored " + std::to_string(b.n_scored) + "): " + path);
  }
  const uint64_t n_tokens = uint64_t{b.n_chunks} * b.n_ctx;
  // From the file's size first: a forged header must not size an allocation.
  if (in.remaining() / sizeof(int32_t) < n_tokens) {
    return Status::Corruption("base logits header promises " + std::to_string(n_tokens) + " tokens (" +
                              std::to_string(b.n_chunks) + " chunks of " + std::to_string(b.n_ctx) +
                              "), the file holds " + std::to_string(in.remaining()) + " bytes after it: " + path);
  }
  b.tokens.resize(n_tokens);
  MIXQ_TRY(in.ReadInto(b.tokens.data(), n_tokens * sizeof(int32_t)).WithContext(path));
  for (int32_t t : b.tokens) {
    if (t < 0 || static_cast<uint32_t>(t) >= b.n_vocab) {
      return Status::Corruption("token id " + std::to_string(t) + " outside the vocabulary: " + path);
    }
  }
  b.rows_offset = in.position();
  b.row_bytes = b.lgt2 ? uint64_t{b.n_vocab} * 4 : 12 + uint64_t{b.n_vocab} * 2;
  const uint64_t n_rows = uint64_t{b.n_chunks} * b.n_scored;
  if (in.remaining() / b.row_bytes < n_rows || in.remaining() != n_rows * b.row_bytes) {
    return Status::Corruption("base logits file has " + std::to_string(in.remaining()) + " bytes of rows, expected " +
                              std::to_string(n_rows * b.row_bytes) + ": " + path);
  }
  return BaseLogits(std::move(impl));
}

Status ReadBaseChunk(const BaseLogits& base, int64_t chunk, BaseRows* rows) {
  return BaseAccess::ReadChunk(base, chunk, rows);
}

Status BaseAccess::ReadChunk(const BaseLogits& base, int64_t chunk, BaseRows* rows) {
  const BaseLogits::Impl& b = *base.impl_;
  rows->n_rows = b.n_scored;
  rows->n_vocab = b.n_vocab;
  rows->lp.resize(size_t{b.n_scored} * b.n_vocab);
  rows->argmax.resize(b.n_scored);
  rows->nll.resize(b.n_scored);
  const uint8_t* data = b.file.bytes().data() + b.rows_offset + uint64_t(chunk) * b.n_scored * b.row_bytes;
  std::vector<float> logits;
  for (uint32_t k = 0; k < b.n_scored; ++k) {
    const uint8_t* row = data + k * b.row_bytes;
    float* lp = rows->lp.data() + size_t{k} * b.n_vocab;
    const int32_t target = b.tokens[size_t(chunk) * b.n_ctx + b.first + k + 1];
    if (b.lgt2) {
      logits.resize(b.n_vocab);
      std::memcpy(logits.data(), row, size_t{b.n_vocab} * 4);
      for (float x : logits) {
        if (!std::isfinite(x))
          return Status::Corruption("non-finite logit in base logits chunk " + std::to_string(chunk));
      }
      // Log-probs are logit - max - log(sum) in float: finite only when the
      // logits span less than the float range.
      const auto [lo, hi] = std::minmax_element(logits.begin(), logits.end());
      if (!std::isfinite(*lo - *hi)) {
        char range[64];
        std::snprintf(range, sizeof range, "%g to %g", *lo, *hi);
        return Status::Corruption("logits from " + std::string(range) + " in base logits chunk " +
                                  std::to_string(chunk) + " row " + std::to_string(k) +
                                  " give log-probs beyond the float range");
      }
      LogSoftmaxRow(logits.data(), b.n_vocab, target, lp, &rows->argmax[k], &rows->nll[k]);
      continue;
    }
    float nll, floor;
    int32_t argmax;
    std::memcpy(&nll, row, 4);
    std::memcpy(&floor, row + 4, 4);
    std::memcpy(&argmax, row + 8, 4);
    if (!std::isfinite(nll) || !(floor <= 0.0f) || floor < 2 * kLpFloor || argmax < 0 ||
        static_cast<uint32_t>(argmax) >= b.n_vocab) {
      return Status::Corruption("bad base logits row " + std::to_string(k) + " of chunk " + std::to_string(chunk));
    }
    const double step = floor / kCodeMax;
    double sum = 0.0;
    for (uint32_t j = 0; j < b.n_vocab; ++j) {
      uint16_t code;
      std::memcpy(&code, row + 12 + 2 * j, 2);
      lp[j] = static_cast<float>(step * code);
      sum += std::exp(static_cast<double>(lp[j]));
    }
    // Rounding leaves the probabilities summing to almost 1; renormalize so
    // that KLD stays a divergence.
    const float shift = static_cast<float>(std::log(sum));
    for (uint32_t j = 0; j < b.n_vocab; ++j) lp[j] -= shift;
    rows->argmax[k] = argmax;
    rows->nll[k] = nll;
  }
  return Status::Ok();
}

struct BaseLogitsWriter::State {
  AtomicFile file;
  std::vector<uint8_t> row;
};

BaseLogitsWriter::BaseLogitsWriter() = default;
BaseLogitsWriter::~BaseLogitsWriter() = default;

Status BaseLogitsWriter::Begin(const std::string& path, int64_t n_ctx, int64_t n_vocab, bool bos,
                               std::span<const int32_t> tokens) {
  auto file = AtomicFile::Create(path);
  MIXQ_TRY(file);
  state_ = std::make_unique<State>(State{std::move(file).value(), {}});
  const int64_t n_chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
  const uint32_t first = static_cast<uint32_t>(n_ctx / 2);
  const uint32_t header[7] = {kVersion,
                              static_cast<uint32_t>(n_ctx),
                              static_cast<uint32_t>(n_chunks),
                              static_cast<uint32_t>(n_vocab),
                              first,
                              static_cast<uint32_t>(n_ctx - 1 - first),
                              bos ? 1u : 0u};
  MIXQ_TRY(state_->file.Write(kMagic, 4));
  MIXQ_TRY(state_->file.Write(header, sizeof(header)));
  MIXQ_TRY(state_->file.Write(tokens.data(), tokens.size() * sizeof(int32_t)));
  state_->row.resize(12 + 2 * static_cast<size_t>(n_vocab));
  return Status::Ok();
}

Status BaseLogitsWriter::AddRow(const float* lp, int64_t n_vocab, int32_t argmax, double nll) {
  float floor = 0.0f;
  for (int64_t j = 0; j < n_vocab; ++j) floor = std::min(floor, lp[j]);
  floor = std::max(floor, kLpFloor);
  const float nll_f = static_cast<float>(nll);
  uint8_t* row = state_->row.data();
  std::memcpy(row, &nll_f, 4);
  std::memcpy(row + 4, &floor, 4);
  std::memcpy(row + 8, &argmax, 4);
  const double inv_step = floor < 0.0f ? kCodeMax / floor : 0.0;
  for (int64_t j = 0; j < n_vocab; ++j) {
    const double code = std::min(kCodeMax, std::round(std::max(lp[j], floor) * inv_step));
    const uint16_t c = static_cast<uint16_t>(code);
    std::memcpy(row + 12 + 2 * j, &c, 2);
  }
  return state_->file.Write(row, state_->row.size());
}

Status BaseLogitsWriter::Finish() { return state_->file.Commit(); }

}  // namespace mixq::engine
