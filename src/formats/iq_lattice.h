// The IQ2/IQ3/IQ1 codebooks as ggml's encoders search them (ggml-formats.md
// §2.9), derived from the decoding grids of iq_grids.h.
//
// Each element of a grid point is a level l in 0..n-1 (a magnitude for IQ2/IQ3,
// the value l - 1 for IQ1). ggml's encoders round each element to a level,
// pack the levels of one grid-sized vector into a code (`bits` per element,
// element 0 in the lowest bits) and look the code up: either it is a grid
// point, or it has a list of the grid points nearest to it. The lists are
// ggml's: ordered by squared distance between the vectors 2l+1, then by grid
// index, holding every point at the `n_distances` smallest distances. ggml
// builds them at start-up (iq2xs_init_impl, iq3xs_init_impl); so does mixq,
// once per grid, for the codes whose levels all exist in the grid: the only
// ones rounding produces (ggml's 2-bit tables also list codes with a level 3,
// which no encoder reaches). The order is a total one, so it does not depend
// on the sort ggml uses.
#ifndef MIXQ_FORMATS_IQ_LATTICE_H_
#define MIXQ_FORMATS_IQ_LATTICE_H_

#include <cstdint>
#include <span>
#include <vector>

namespace mixq::formats::internal {

class LatticeIndex {
 public:
  // `levels` lists the grid byte of each level (ascending l), all of which
  // rounding can reach; `is_signed`: the bytes are int8 (IQ1).
  LatticeIndex(const uint8_t* grid_bytes, int n_points, int dims, int bits, std::span<const uint8_t> levels,
               bool is_signed, int n_distances);

  int dims() const { return dims_; }
  int bits() const { return bits_; }
  int n_points() const { return n_points_; }
  // 2l+1 of element k of point p, as float: what ggml's searches scale.
  const float* Odd(int p) const { return &odd_[static_cast<size_t>(p) * dims_]; }
  const uint8_t* Levels(int p) const { return &level_[static_cast<size_t>(p) * dims_]; }
  // The decoded grid values of point p (magnitudes; IQ1: -1, 0, 1), as float.
  const float* Values(int p) const { return &value_[static_cast<size_t>(p) * dims_]; }
  // The decoded value of level l.
  float LevelValue(int l) const { return level_value_[l]; }
  int n_levels() const { return static_cast<int>(level_value_.size()); }
  // The grid point of a code, or -1 when the code is off the grid.
  int Find(uint32_t code) const { return slot_[code] >= 0 ? slot_[code] : -1; }
  // The nearest grid points of an off-grid code, in ggml's order.
  std::span<const uint16_t> Neighbours(uint32_t code) const {
    const uint16_t* list = &lists_[list_start_[static_cast<size_t>(-1 - slot_[code])]];
    return {list + 1, list[0]};
  }
  // The same points' 2l+1 values by columns, for searching four at a time:
  // for points 4g..4g+3 of the list, element k's four values are at
  // [4 * (dims * g + k)]. A last short group repeats the list's last point.
  const float* NeighbourColumns(uint32_t code) const {
    return &columns_[column_start_[static_cast<size_t>(-1 - slot_[code])]];
  }
  uint32_t Code(const int8_t* l) const {
    uint32_t code = 0;
    for (int k = 0; k < dims_; ++k) code |= static_cast<uint32_t>(l[k]) << (bits_ * k);
    return code;
  }

 private:
  void ListNeighbours(uint32_t code, int n_distances);

  int dims_;
  int bits_;
  int n_points_;
  std::vector<uint8_t> level_;
  std::vector<float> odd_;
  std::vector<float> value_;
  std::vector<float> level_value_;
  std::vector<int32_t> slot_;  // by code: grid index, or -1 - the number of its list
  std::vector<uint16_t> lists_;
  std::vector<uint32_t> list_start_;  // by list number: offset in lists_ (its length, then its points)
  std::vector<float> columns_;
  std::vector<uint32_t> column_start_;  // by list number: offset in columns_
};

enum class Grid { kIQ2XXS, kIQ2XS, kIQ2S, kIQ3XXS, kIQ3S, kIQ1 };

// Built on first use (thread-safe), as ggml's tables are. GgmlLattice lists
// what ggml lists; NearestLattice only the points at the nearest distance,
// for mixq's searches, which try many more multipliers than ggml and find
// that the farther points almost never win.
const LatticeIndex& GgmlLattice(Grid grid);
const LatticeIndex& NearestLattice(Grid grid);

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_IQ_LATTICE_H_
