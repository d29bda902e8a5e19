#include "measure/weight_errors.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "base/cpu_time.h"
#include "base/parallel.h"

namespace mixq::measure {
namespace {

// One task: rows [begin, end) of type `type`'s row list.
struct Task {
  size_t type;
  int64_t begin, end;
};

// Rows drawn with probability proportional to the control's row error:
// systematic, at the points (k + 1/2) · total / n_picks of the running sum of
// row errors, k = 0 .. n_picks − 1. A row of more than total / n_picks is
// drawn several times (count); a row of error 0 never.
struct RowPicks {
  std::vector<int64_t> rows;  // ascending, once each
  std::vector<double> count;
  int64_t n_picks = 0;
  double total = 0;
};

RowPicks PickRows(const std::vector<double>& row_error, int64_t n_picks) {
  RowPicks p;
  p.n_picks = n_picks;
  for (double e : row_error) p.total += e;
  if (!(p.total > 0)) return p;
  const double step = p.total / static_cast<double>(n_picks);
  double below = 0;  // running sum before row r
  int64_t k = 0;
  for (size_t r = 0; r < row_error.size() && k < n_picks; ++r) {
    const double above = below + row_error[r];
    int64_t count = 0;
    while (k < n_picks && (static_cast<double>(k) + 0.5) * step < above) ++k, ++count;
    if (count > 0) {
      p.rows.push_back(static_cast<int64_t>(r));
      p.count.push_back(static_cast<double>(count));
    }
    below = above;
  }
  p.n_picks = k;  // all of them, unless rounding left the last point past the sum
  return p;
}

// The control of a sampled type: the full type nearest in bits per weight
// (the first of equals), or none.
std::optional<size_t> ControlOf(std::span<const formats::Format* const> types, std::span<const bool> full, size_t i) {
  std::optional<size_t> best;
  for (size_t k = 0; k < types.size(); ++k) {
    if (!full[k]) continue;
    if (!best || std::abs(types[k]->bpw() - types[i]->bpw()) < std::abs(types[*best]->bpw() - types[i]->bpw())) {
      best = k;
    }
  }
  return best;
}

}  // namespace

std::vector<int64_t> SampledRows(const gguf::TensorInfo& t, int64_t error_rows) {
  const int64_t n_mat = t.ne[2] * t.ne[3];
  const int64_t kept = error_rows <= 0 ? t.ne[1] : std::min(t.ne[1], std::max<int64_t>(1, error_rows / n_mat));
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(kept * n_mat));
  for (int64_t m = 0; m < n_mat; ++m) {
    for (int64_t j = 0; j < kept; ++j) {
      // The middle row of each of `kept` equal stretches (every row when kept == ne[1]).
      rows.push_back(m * t.ne[1] + (2 * j + 1) * t.ne[1] / (2 * kept));
    }
  }
  return rows;
}

Result<std::vector<TypeError>> WeightErrors(const gguf::TensorInfo& t, const std::vector<float>& values,
                                            const std::vector<float>* importance,
                                            std::span<const formats::Format* const> types, std::span<const bool> full,
                                            const WeightErrorOptions& options) {
  const int64_t n = t.ne[0];
  const int64_t n_rows = t.n_rows();
  const std::vector<int64_t> even = SampledRows(t, options.error_rows);
  const bool sampling = static_cast<int64_t>(even.size()) < n_rows;
  std::vector<int64_t> all_rows(static_cast<size_t>(n_rows));
  for (int64_t r = 0; r < n_rows; ++r) all_rows[static_cast<size_t>(r)] = r;

  std::vector<TypeError> out(types.size());
  std::vector<int64_t> row_bytes(types.size());
  // The rows each type encodes, its encodings of them and each one's error, in that order.
  std::vector<const std::vector<int64_t>*> rows_of(types.size(), &all_rows);
  std::vector<std::vector<uint8_t>> bytes(types.size());
  std::vector<std::vector<double>> row_error(types.size());
  for (size_t i = 0; i < types.size(); ++i) {
    MIXQ_ASSIGN_OR_RETURN(row_bytes[i], formats::RowBytes(*types[i], n));
    out[i].format = types[i];
    out[i].n_bytes = row_bytes[i] * n_rows;
  }
  const int n_threads = ResolveThreadCount(options.n_threads);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(n_threads), std::vector<float>(static_cast<size_t>(n)));
  std::vector<std::vector<double>> cpu(static_cast<size_t>(n_threads), std::vector<double>(types.size()));
  // Encodes the types `which` on their rows: one task per (type, block of about
  // 16K weights, as formats::QuantizeRows makes).
  auto encode = [&](const std::vector<size_t>& which) -> Status {
    const int64_t block = std::max<int64_t>(1, (int64_t{1} << 14) / n);
    std::vector<Task> tasks;
    for (size_t i : which) {
      const int64_t rows = static_cast<int64_t>(rows_of[i]->size());
      bytes[i].resize(static_cast<size_t>(rows * row_bytes[i]));
      row_error[i].resize(static_cast<size_t>(rows));
      for (int64_t b = 0; b < rows; b += block) tasks.push_back({i, b, std::min(rows, b + block)});
    }
    std::mutex failure_mutex;
    std::optional<std::pair<size_t, Status>> failure;  // the first failed task's, in task order
    RunTasks(static_cast<int64_t>(tasks.size()), n_threads, [&](int64_t k, int thread) {
      const double start = ThreadCpuSeconds();
      const Task& task = tasks[static_cast<size_t>(k)];
      const formats::Format& f = *types[task.type];
      const std::vector<int64_t>& rows = *rows_of[task.type];
      float* y = scratch[static_cast<size_t>(thread)].data();
      for (int64_t j = task.begin; j < task.end; ++j) {
        const int64_t r = rows[static_cast<size_t>(j)];
        const float* x = values.data() + r * n;
        const float* imp = importance != nullptr ? importance->data() + r / t.ne[1] * n : nullptr;
        uint8_t* code = bytes[task.type].data() + j * row_bytes[task.type];
        Status s = formats::QuantizeRows(f, options.method, x, code, 1, n, imp, 1);
        if (s.ok()) s = formats::DequantizeRows(f, code, y, 1, n, 1);
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (!failure || failure->first > static_cast<size_t>(k)) {
            failure.emplace(static_cast<size_t>(k), s.WithContext(std::string(f.name) + ", row " + std::to_string(r)));
          }
          return;
        }
        double e = 0;
        for (int64_t c = 0; c < n; ++c) {
          const double d = static_cast<double>(x[c]) - y[c];
          e += (imp != nullptr ? imp[c] : 1.0f) * d * d;
        }
        row_error[task.type][static_cast<size_t>(j)] = e;
      }
      cpu[static_cast<size_t>(thread)][task.type] += ThreadCpuSeconds() - start;
    });
    return failure ? failure->second.WithContext("tensor '" + t.name + "'") : Status::Ok();
  };

  // Without sampling every type encodes every row, all in one pool; else the
  // full types first, whose row errors choose the others' rows.
  std::vector<size_t> first, second;
  for (size_t i = 0; i < types.size(); ++i) (full[i] || !sampling ? first : second).push_back(i);
  MIXQ_TRY(encode(first));
  std::vector<std::optional<size_t>> control(types.size());
  std::map<size_t, RowPicks> picks;  // by control
  for (size_t i : second) {
    control[i] = ControlOf(types, full, i);
    if (control[i] && !picks.contains(*control[i])) {
      picks.emplace(*control[i], PickRows(row_error[*control[i]], static_cast<int64_t>(even.size())));
    }
    if (control[i] && picks.at(*control[i]).total > 0) {
      rows_of[i] = &picks.at(*control[i]).rows;
    } else {
      control[i].reset();
      rows_of[i] = &even;
    }
  }
  MIXQ_TRY(encode(second));

  for (size_t i = 0; i < types.size(); ++i) {
    for (const auto& c : cpu) out[i].cpu_seconds += c[i];
    if (full[i] || !sampling) {
      for (double e : row_error[i]) out[i].error += e;
      out[i].bytes = std::move(bytes[i]);
      continue;
    }
    out[i].estimated = true;
    if (control[i]) {
      const RowPicks& p = picks.at(*control[i]);
      const std::vector<double>& c = row_error[*control[i]];
      for (size_t j = 0; j < p.rows.size(); ++j) {
        out[i].error += p.count[j] * (row_error[i][j] / c[static_cast<size_t>(p.rows[j])]);
      }
      out[i].error *= p.total / static_cast<double>(p.n_picks);
    } else {
      for (double e : row_error[i]) out[i].error += e;
      out[i].error *= static_cast<double>(n_rows) / static_cast<double>(even.size());
    }
  }
  return out;
}

}  // namespace mixq::measure
