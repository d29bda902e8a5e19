// Internal: the resumable measurement cache, one JSON line per measured
// tensor after a first line with the run's CacheKey (content hashes of the
// model, the calibration tokens and the imatrix, and every option that changes
// a record). A run with another key says why and starts the file afresh; a
// torn last line (the process was killed mid-write) is ignored. The file is
// locked from Load to destruction, so that two processes sharing it wait for
// each other instead of mixing their records.
#ifndef MIXQ_MEASURE_CACHE_H_
#define MIXQ_MEASURE_CACHE_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/content_hash.h"
#include "base/file_lock.h"
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

CacheKey MeasureCacheKey(const gguf::GgufFile& file, std::span<const int32_t> tokens, const MeasureOptions& options,
                         const std::vector<const formats::Format*>& types,
                         const std::vector<const formats::Format*>& calibration);

class MeasurementCache {
 public:
  MeasurementCache(std::string path, CacheKey key) : path_(std::move(path)), key_(std::move(key)) {}
  // Locks the file and reads the records made with this key; `on_note` gets
  // one line when another process holds the lock (Load then waits) and when
  // the file holds another key's records (which the next Append discards).
  Status Load(const std::function<void(const std::string&)>& on_note);
  const TensorRecord* Find(const std::string& tensor) const;
  Status Append(const TensorRecord& record);
  size_t size() const { return records_.size(); }

 private:
  std::string path_;
  CacheKey key_;
  std::optional<FileLock> lock_;
  bool header_written_ = false;
  bool torn_tail_ = false;  // the file ends inside a line (see Load)
  std::map<std::string, TensorRecord> records_;
};

}  // namespace mixq::measure

#endif  // MIXQ_MEASURE_CACHE_H_
