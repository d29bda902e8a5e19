#include "formats/iq_lattice.h"

#include <algorithm>
#include <limits>

#include "formats/iq_grids.h"

namespace mixq::formats::internal {
namespace {

// Codes with a level no encoder produces; never looked up.
constexpr int32_t kUnreachable = std::numeric_limits<int32_t>::min();

const uint8_t* Bytes(const void* table) { return static_cast<const uint8_t*>(table); }

}  // namespace

LatticeIndex::LatticeIndex(const uint8_t* grid_bytes, int n_points, int dims, int bits, std::span<const uint8_t> levels,
                           bool is_signed, int n_distances)
    : dims_(dims),
      bits_(bits),
      n_points_(n_points),
      level_(static_cast<size_t>(n_points) * dims),
      odd_(level_.size()),
      value_(level_.size()),
      slot_(size_t{1} << (bits * dims), kUnreachable) {
  for (uint8_t byte : levels) {
    level_value_.push_back(is_signed ? static_cast<float>(static_cast<int8_t>(byte)) : static_cast<float>(byte));
  }
  for (size_t i = 0; i < level_.size(); ++i) {
    int l = 0;
    while (levels[l] != grid_bytes[i]) ++l;  // every grid byte is one of the levels
    level_[i] = static_cast<uint8_t>(l);
    odd_[i] = static_cast<float>(2 * l + 1);
    value_[i] = level_value_[l];
  }
  for (int p = 0; p < n_points; ++p) {
    int8_t l[8];
    for (int k = 0; k < dims; ++k) l[k] = static_cast<int8_t>(Levels(p)[k]);
    slot_[Code(l)] = p;
  }
  const uint32_t mask = (1u << bits) - 1;
  const int n_levels = static_cast<int>(levels.size());
  for (uint32_t code = 0; code < slot_.size(); ++code) {
    if (slot_[code] >= 0) continue;
    bool reachable = true;
    for (int k = 0; k < dims; ++k) reachable &= static_cast<int>((code >> (bits * k)) & mask) < n_levels;
    if (reachable) ListNeighbours(code, n_distances);
  }
}

void LatticeIndex::ListNeighbours(uint32_t code, int n_distances) {
  const uint32_t mask = (1u << bits_) - 1;
  int target[8];
  for (int k = 0; k < dims_; ++k) target[k] = static_cast<int>((code >> (bits_ * k)) & mask);
  // Squared distances in level units (ggml's 2l+1 units give 4x these: same order).
  std::vector<int> dist(n_points_);
  int max_dist = 0;
  for (int p = 0; p < n_points_; ++p) {
    int d = 0;
    for (int k = 0; k < dims_; ++k) {
      int diff = Levels(p)[k] - target[k];
      d += diff * diff;
    }
    dist[p] = d;
    max_dist = std::max(max_dist, d);
  }
  std::vector<bool> present(max_dist + 1, false);
  for (int d : dist) present[d] = true;
  slot_[code] = -1 - static_cast<int32_t>(list_start_.size());
  size_t count_at = lists_.size();
  list_start_.push_back(static_cast<uint32_t>(count_at));
  lists_.push_back(0);
  int taken = 0;
  for (int d = 0; d <= max_dist && taken < n_distances; ++d) {
    if (!present[d]) continue;
    ++taken;
    for (int p = 0; p < n_points_; ++p) {
      if (dist[p] == d) lists_.push_back(static_cast<uint16_t>(p));
    }
  }
  const int n = static_cast<int>(lists_.size() - count_at - 1);
  lists_[count_at] = static_cast<uint16_t>(n);
  column_start_.push_back(static_cast<uint32_t>(columns_.size()));
  for (int g = 0; g < n; g += 4) {
    for (int k = 0; k < dims_; ++k) {
      for (int i = 0; i < 4; ++i) columns_.push_back(Odd(lists_[count_at + 1 + std::min(g + i, n - 1)])[k]);
    }
  }
}

namespace {

constexpr uint8_t kIQ2Levels[3] = {0x08, 0x19, 0x2B};
constexpr uint8_t kIQ3XXSLevels[8] = {4, 12, 20, 28, 36, 44, 52, 62};
constexpr uint8_t kIQ3SLevels[8] = {1, 3, 5, 7, 9, 11, 13, 15};
constexpr uint8_t kIQ1Levels[3] = {0xFF, 0x00, 0x01};  // int8 -1, 0, 1

// Each grid's layout, and how many distances ggml's neighbour lists span.
struct GridSpec {
  const void* grid;
  int n_points;
  int dims;
  int bits;
  std::span<const uint8_t> levels;
  bool is_signed;
  int ggml_distances;
};

GridSpec SpecOf(Grid grid) {
  switch (grid) {
    case Grid::kIQ2XXS:
      return {kIQ2XXSGrid, 256, 8, 2, kIQ2Levels, false, 2};
    case Grid::kIQ2XS:
      return {kIQ2XSGrid, 512, 8, 2, kIQ2Levels, false, 2};
    case Grid::kIQ2S:
      return {kIQ2SGrid, 1024, 8, 2, kIQ2Levels, false, 1};
    case Grid::kIQ3XXS:
      return {kIQ3XXSGrid, 256, 4, 3, kIQ3XXSLevels, false, 2};
    case Grid::kIQ3S:
      return {kIQ3SGrid, 512, 4, 3, kIQ3SLevels, false, 3};
    case Grid::kIQ1:
      break;
  }
  return {kIQ1SGrid, 2048, 8, 2, kIQ1Levels, true, 3};
}

template <Grid kGrid, bool kNearest>
const LatticeIndex& Build() {
  static const LatticeIndex index = [] {
    const GridSpec s = SpecOf(kGrid);
    return LatticeIndex(Bytes(s.grid), s.n_points, s.dims, s.bits, s.levels, s.is_signed,
                        kNearest ? 1 : s.ggml_distances);
  }();
  return index;
}

template <bool kNearest>
const LatticeIndex& Lattice(Grid grid) {
  switch (grid) {
    case Grid::kIQ2XXS:
      return Build<Grid::kIQ2XXS, kNearest>();
    case Grid::kIQ2XS:
      return Build<Grid::kIQ2XS, kNearest>();
    case Grid::kIQ2S:
      return Build<Grid::kIQ2S, kNearest>();
    case Grid::kIQ3XXS:
      return Build<Grid::kIQ3XXS, kNearest>();
    case Grid::kIQ3S:
      return Build<Grid::kIQ3S, kNearest>();
    case Grid::kIQ1:
      break;
  }
  return Build<Grid::kIQ1, kNearest>();
}

}  // namespace

const LatticeIndex& GgmlLattice(Grid grid) { return Lattice<false>(grid); }
const LatticeIndex& NearestLattice(Grid grid) { return Lattice<true>(grid); }

}  // namespace mixq::formats::internal
