#include "measure/weight_errors.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <optional>
#include <string>

#include "base/parallel.h"

namespace mixq::measure {
namespace {

double ThreadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// One task: rows [begin, end) of type `type`'s row list.
struct Task {
  size_t type;
  int64_t begin, end;
};

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
  const std::vector<int64_t> sample = SampledRows(t, options.error_rows);
  const bool sampling = static_cast<int64_t>(sample.size()) < n_rows;
  std::vector<int64_t> all_rows;
  if (sampling) {
    all_rows.resize(static_cast<size_t>(n_rows));
    for (int64_t r = 0; r < n_rows; ++r) all_rows[static_cast<size_t>(r)] = r;
  }
  auto rows_of = [&](size_t i) -> const std::vector<int64_t>& { return full[i] && sampling ? all_rows : sample; };

  std::vector<TypeError> out(types.size());
  std::vector<int64_t> row_bytes(types.size());
  // Encodings of the sampled rows of the other types, row after row of the sample.
  std::vector<std::vector<uint8_t>> bytes(types.size());
  // Each encoded row's error, by type, in the order of its row list.
  std::vector<std::vector<double>> row_error(types.size());
  std::vector<Task> tasks;
  // Blocks of about 16K weights, as formats::QuantizeRows makes.
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 14) / n);
  for (size_t i = 0; i < types.size(); ++i) {
    MIXQ_ASSIGN_OR_RETURN(row_bytes[i], formats::RowBytes(*types[i], n));
    out[i].format = types[i];
    out[i].n_bytes = row_bytes[i] * n_rows;
    const int64_t rows = static_cast<int64_t>(rows_of(i).size());
    bytes[i].resize(static_cast<size_t>(rows * row_bytes[i]));
    row_error[i].resize(static_cast<size_t>(rows));
    for (int64_t b = 0; b < rows; b += block) tasks.push_back({i, b, std::min(rows, b + block)});
  }
  const int n_threads = ResolveThreadCount(options.n_threads);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(n_threads), std::vector<float>(static_cast<size_t>(n)));
  std::vector<std::vector<double>> cpu(static_cast<size_t>(n_threads), std::vector<double>(types.size()));
  std::mutex failure_mutex;
  std::optional<std::pair<size_t, Status>> failure;  // the first failed task's, in task order
  RunTasks(static_cast<int64_t>(tasks.size()), n_threads, [&](int64_t k, int thread) {
    const double start = ThreadCpuSeconds();
    const Task& task = tasks[static_cast<size_t>(k)];
    const formats::Format& f = *types[task.type];
    const std::vector<int64_t>& rows = rows_of(task.type);
    float* y = scratch[static_cast<size_t>(thread)].data();
    for (int64_t j = task.begin; j < task.end; ++j) {
      const int64_t r = rows[static_cast<size_t>(j)];
      const int64_t m = r / t.ne[1];
      const float* x = values.data() + r * n;
      const float* imp = importance != nullptr ? importance->data() + m * n : nullptr;
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
  if (failure) return failure->second.WithContext("tensor '" + t.name + "'");

  for (size_t i = 0; i < types.size(); ++i) {
    for (const auto& c : cpu) out[i].cpu_seconds += c[i];
    for (double e : row_error[i]) out[i].error += e;
    if (full[i] || !sampling) {
      out[i].bytes = std::move(bytes[i]);
      continue;
    }
    out[i].estimated = true;
    const std::optional<size_t> control = ControlOf(types, full, i);
    double control_sampled = 0;
    if (control) {
      for (int64_t r : sample) control_sampled += row_error[*control][static_cast<size_t>(r)];
    }
    if (control && control_sampled > 0) {
      double control_all = 0;
      for (double e : row_error[*control]) control_all += e;
      out[i].error *= control_all / control_sampled;
    } else {
      out[i].error *= static_cast<double>(n_rows) / static_cast<double>(sample.size());
    }
  }
  return out;
}

}  // namespace mixq::measure
