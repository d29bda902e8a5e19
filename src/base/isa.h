// The one decision of which x86-64 vector instruction set mixq's hand-written
// kernels use (the engine's GEMM, the quantizers' search lanes): the best the
// CPU runs, or a lesser one named by the environment, so that every path can
// be exercised and compared on one machine.
//
//   MIXQ_ISA=scalar   the baseline x86-64 code (SSE2) everywhere
//   MIXQ_ISA=avx2     AVX2 + FMA, if the CPU has it (else the best it has)
//   MIXQ_ISA=avx512   AVX-512 F + BW, if the CPU has it (else the best it has)
//
// An unknown value means scalar: a typo must not silently pick the fastest,
// least portable path. The choice is made once per process.
#ifndef MIXQ_BASE_ISA_H_
#define MIXQ_BASE_ISA_H_

#include <optional>
#include <string_view>

namespace mixq {

// In increasing order: each level's kernels may use everything of the ones below.
enum class Isa { kScalar, kAvx2, kAvx512 };

// Whether this CPU (and OS) runs code compiled for `isa`.
bool IsaSupported(Isa isa);

// The highest level IsaSupported.
Isa BestSupportedIsa();

// What MIXQ_ISA = `requested` (nullopt: unset) selects on a CPU whose best is `best`.
Isa ResolveIsa(std::optional<std::string_view> requested, Isa best);

// ResolveIsa(MIXQ_ISA, BestSupportedIsa()), read on first use.
Isa ActiveIsa();

// "scalar", "avx2", "avx512": the names MIXQ_ISA takes.
std::string_view IsaName(Isa isa);

// The target attributes of functions compiled for a level, matching what
// IsaSupported checks; call such a function only where ActiveIsa() (or a
// test's choice that IsaSupported) is at least that level.
#define MIXQ_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define MIXQ_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma")))

}  // namespace mixq

#endif  // MIXQ_BASE_ISA_H_
