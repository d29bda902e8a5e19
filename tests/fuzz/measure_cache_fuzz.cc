// libFuzzer harness: the measure cache (a key line, then one JSON line per
// tensor) must load or be refused without crashing, whatever the file holds;
// and a record appended after loading it must be there when the file is
// loaded again (a torn or garbled tail must not swallow it).
#include <cstdint>
#include <cstdlib>

#include "fuzz_file.h"
#include "measure/cache.h"

namespace {

// The key of the seed (seeds/measure_cache: `mixq measure` on ref-dev, killed
// mid-run), so that mutations of its records are read, not discarded as stale.
const mixq::CacheKey kKey = {
    {"bos_id", "1"},
    {"calibration tokens", "c2a99ca3b6aa61840a86006fb7baf365"},
    {"calibration types", "Q4_K"},
    {"imatrix", "none"},
    {"method", "best"},
    {"mixq version", "0.1.0"},
    {"model", "43ada3844223215f2faf4880dfd0154d"},
    {"n_chunks", "1"},
    {"n_ctx", "64"},
    {"probe layers", "4"},
    {"scheme", "linear"},
    {"types", "Q4_K,Q8_0"},
};

bool SameRecord(const mixq::measure::TensorRecord& a, const mixq::measure::TensorRecord& b) {
  if (a.name != b.name || a.types.size() != b.types.size()) return false;
  for (size_t i = 0; i < a.types.size(); ++i) {
    const auto &x = a.types[i], &y = b.types[i];
    if (x.type != y.type || x.n_bytes != y.n_bytes || x.error != y.error || x.kld != y.kld || x.local != y.local) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = mixq::fuzz::WriteScratch(data, size);
  mixq::measure::TensorRecord fresh{"fuzz.appended.weight", {{"Q4_K", 144, 0.25, 0.125, 0.5}}};
  {
    mixq::measure::MeasurementCache cache(path, kKey);
    if (!cache.Load(nullptr).ok()) return 0;
    for (const char* name : {"blk.0.attn_q.weight", "output.weight", ""}) (void)cache.Find(name);
    if (!cache.Append(fresh).ok()) std::abort();
  }
  mixq::measure::MeasurementCache again(path, kKey);
  if (!again.Load(nullptr).ok()) return 0;
  const mixq::measure::TensorRecord* found = again.Find(fresh.name);
  if (found == nullptr || !SameRecord(*found, fresh)) std::abort();
  return 0;
}
