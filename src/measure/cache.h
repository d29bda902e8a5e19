// Internal: the resumable measurement cache, one JSON line per measured
// tensor after a first line that identifies the run (model, text, options).
// A run with another identity starts the file afresh; a torn last line (the
// process was killed mid-write) is ignored.
#ifndef MIXQ_MEASURE_CACHE_H_
#define MIXQ_MEASURE_CACHE_H_

#include <map>
#include <string>
#include <vector>

#include "measure/measure.h"

namespace mixq::measure {

struct TypeRecord {
  std::string type;
  int64_t n_bytes = 0;  // unpadded tensor bytes
  double error = 0;     // importance-weighted squared error
  double kld = -1;      // measured single-tensor KLD; < 0 when not measured
  double local = -1;    // Perturbation::local; < 0 when not measured
};

struct TensorRecord {
  std::string name;
  std::vector<TypeRecord> types;
};

std::string CacheKey(const gguf::GgufFile& file, const MeasureOptions& options,
                     const std::vector<const formats::Format*>& types,
                     const std::vector<const formats::Format*>& calibration);

class MeasurementCache {
 public:
  MeasurementCache(std::string path, std::string key) : path_(std::move(path)), key_(std::move(key)) {}
  Status Load();
  const TensorRecord* Find(const std::string& tensor) const;
  Status Append(const TensorRecord& record);
  size_t size() const { return records_.size(); }

 private:
  std::string path_;
  std::string key_;
  bool header_written_ = false;
  std::map<std::string, TensorRecord> records_;
};

}  // namespace mixq::measure

#endif  // MIXQ_MEASURE_CACHE_H_
