#include "base/isa.h"

#include <algorithm>
#include <cstdlib>

namespace mixq {

bool IsaSupported(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      // BW for the byte and word lanes; the kernels also use AVX2 and FMA.
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && IsaSupported(Isa::kAvx2);
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kScalar:
      break;
  }
  return true;
}

Isa BestSupportedIsa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    if (IsaSupported(isa)) return isa;
  }
  return Isa::kScalar;
}

Isa ResolveIsa(std::optional<std::string_view> requested, Isa best) {
  if (!requested.has_value()) return best;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (*requested == IsaName(isa)) return std::min(isa, best);
  }
  return Isa::kScalar;
}

Isa ActiveIsa() {
  static const Isa isa = [] {
    const char* requested = std::getenv("MIXQ_ISA");
    return ResolveIsa(requested != nullptr ? std::optional<std::string_view>(requested) : std::nullopt,
                      BestSupportedIsa());
  }();
  return isa;
}

std::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kScalar:
      break;
  }
  return "scalar";
}

}  // namespace mixq
