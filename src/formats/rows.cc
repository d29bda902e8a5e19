// QuantizeRows / DequantizeRows: shape checks, input checks, and spreading
// whole rows over threads. Rows are independent, so the bytes do not depend on
// the thread count or the chunking.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>

#include "base/parallel.h"
#include "formats/feedback.h"
#include "formats/formats.h"

namespace mixq::formats {
namespace {

// Rows per work item: about 16K elements, like llama-quantize's chunks, so
// small rows do not pay one scheduling step each.
int64_t RowsPerChunk(int64_t n_per_row) { return std::max<int64_t>(1, (int64_t{1} << 14) / n_per_row); }

Status CheckShape(const Format& format, const void* src, const void* dst, int64_t n_rows, int64_t n_per_row,
                  int64_t* row_bytes) {
  if (n_rows < 0 || n_per_row <= 0) {
    return Status::InvalidArgument("bad tensor shape: " + std::to_string(n_rows) + " rows of " +
                                   std::to_string(n_per_row) + " elements");
  }
  Result<int64_t> bytes = RowBytes(format, n_per_row);
  MIXQ_TRY(bytes);
  if (n_rows > 0 && (src == nullptr || dst == nullptr)) return Status::InvalidArgument("null row buffer");
  if (n_rows > 0 && *bytes > std::numeric_limits<int64_t>::max() / n_rows) {
    return Status::InvalidArgument("tensor of " + std::to_string(n_rows) + " rows overflows a 64-bit byte count");
  }
  *row_bytes = *bytes;
  return Status::Ok();
}

}  // namespace

int64_t FirstNonFinite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

namespace {

Status CheckImportance(const float* importance, int64_t n_per_row) {
  if (importance == nullptr) return Status::Ok();
  for (int64_t j = 0; j < n_per_row; ++j) {
    if (!std::isfinite(importance[j]) || importance[j] < 0) {
      return Status::InvalidArgument("importance value " + std::to_string(j) +
                                     " is negative or not finite; check the imatrix");
    }
  }
  return Status::Ok();
}

Status NonFiniteWeight(const float* src, int64_t row, int64_t n_per_row) {
  int64_t col = FirstNonFinite(src + row * n_per_row, n_per_row);
  return Status::Corruption("weight is NaN or infinite: row " + std::to_string(row) + ", element " +
                            std::to_string(col) + " (value " + std::to_string(src[row * n_per_row + col]) + ")");
}

}  // namespace

Status QuantizeRows(const Format& format, QuantMethod method, const float* src, uint8_t* dst, int64_t n_rows,
                    int64_t n_per_row, const float* importance, int n_threads) {
  if (!format.can_encode()) {
    return Status::NotSupported("mixq cannot encode type " + std::string(format.name) +
                                "; encodable types: " + EncodableFormatNames());
  }
  if (format.needs_imatrix && importance == nullptr) {
    return Status::NotSupported("type " + std::string(format.name) +
                                " needs an importance matrix (--imatrix); ggml cannot encode it without one");
  }
  int64_t row_bytes = 0;
  MIXQ_TRY(CheckShape(format, src, dst, n_rows, n_per_row, &row_bytes));
  MIXQ_TRY(CheckImportance(importance, n_per_row));
  QuantizeRowFn fn = method == QuantMethod::kGgml ? format.quantize_row_ggml : format.quantize_row_best;
  // The smallest bad row is reported, whatever order the threads ran in.
  std::atomic<int64_t> bad_row{n_rows};
  ParallelFor(n_rows, RowsPerChunk(n_per_row), n_threads, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = src + r * n_per_row;
      if (FirstNonFinite(x, n_per_row) >= 0) {
        int64_t seen = bad_row.load();
        while (r < seen && !bad_row.compare_exchange_weak(seen, r)) {
        }
        return;  // the rest of this chunk cannot hold a smaller bad row
      }
      fn(x, dst + r * row_bytes, n_per_row, importance);
    }
  });
  int64_t row = bad_row.load();
  if (row < n_rows) return NonFiniteWeight(src, row, n_per_row);
  return Status::Ok();
}

Status QuantizeRowsFeedback(const Format& format, const float* src, uint8_t* dst, int64_t n_rows, int64_t n_per_row,
                            const float* importance, const FeedbackMatrices& feedback, int n_threads) {
  if (!format.can_feedback()) {
    return Status::NotSupported("mixq has no error-feedback encoder for type " + std::string(format.name));
  }
  int64_t row_bytes = 0;
  MIXQ_TRY(CheckShape(format, src, dst, n_rows, n_per_row, &row_bytes));
  MIXQ_TRY(CheckImportance(importance, n_per_row));
  const auto n2 = static_cast<size_t>(n_per_row * n_per_row);
  if (feedback.u.size() != n2 || feedback.h.size() != n2) {
    return Status::InvalidArgument("feedback matrices of " + std::to_string(feedback.u.size()) + " and " +
                                   std::to_string(feedback.h.size()) + " values for rows of " +
                                   std::to_string(n_per_row));
  }
  // Every row is checked first: an error spreads within its row only, but a
  // failed call should write nothing it would not write on good input.
  for (int64_t r = 0; r < n_rows; ++r) {
    if (FirstNonFinite(src + r * n_per_row, n_per_row) >= 0) return NonFiniteWeight(src, r, n_per_row);
  }
  // Tiles of rows share each read of the factor's rows.
  constexpr int64_t kTileRows = 16;
  ParallelFor(n_rows, kTileRows, n_threads, [&](int64_t begin, int64_t end) {
    internal::QuantizeRowsWithFeedback(format, src + begin * n_per_row, dst + begin * row_bytes, end - begin, n_per_row,
                                       row_bytes, importance, feedback.u.data(), feedback.h.data(), feedback.tokens);
  });
  return Status::Ok();
}

Status DequantizeRows(const Format& format, const uint8_t* src, float* dst, int64_t n_rows, int64_t n_per_row,
                      int n_threads) {
  if (!format.can_decode()) return Status::NotSupported("mixq cannot decode type " + std::string(format.name));
  int64_t row_bytes = 0;
  MIXQ_TRY(CheckShape(format, src, dst, n_rows, n_per_row, &row_bytes));
  ParallelFor(n_rows, RowsPerChunk(n_per_row), n_threads, [&](int64_t begin, int64_t end) {
    format.dequantize_row(src + begin * row_bytes, dst + begin * n_per_row, (end - begin) * n_per_row);
  });
  return Status::Ok();
}

}  // namespace mixq::formats
