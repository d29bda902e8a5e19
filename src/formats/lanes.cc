#include "formats/lanes.h"

#include <atomic>

namespace mixq::formats::internal {
namespace {

std::atomic<Isa>& Selected() {
  static std::atomic<Isa> isa{ActiveIsa()};
  return isa;
}

}  // namespace

Isa LaneIsa() { return Selected().load(std::memory_order_relaxed); }

void SetLaneIsa(Isa isa) { Selected().store(isa, std::memory_order_relaxed); }

}  // namespace mixq::formats::internal
