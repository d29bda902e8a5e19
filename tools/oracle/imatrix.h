// llama.cpp importance-matrix files, read the way llama-quantize reads them
// (that code lives in libllama-common, which has no C API): the GGUF format
// that llama-imatrix writes by default and the legacy .dat format.
#ifndef MIXQ_TOOLS_ORACLE_IMATRIX_H_
#define MIXQ_TOOLS_ORACLE_IMATRIX_H_

#include <map>
#include <string>
#include <vector>

namespace oracle {

struct Imatrix {
  std::string format;  // "gguf" or "legacy"
  // Per tensor, the importance of each input column (per expert, one after
  // the other): GGUF in_sum2 / round(count), 1 where the count is 0; legacy
  // the stored value / ncall.
  std::map<std::string, std::vector<float>> entries;
  std::vector<std::string> datasets;
  int chunk_count = 0;
};

// Fills `im` or returns why the file cannot be used.
std::string LoadImatrix(const std::string& path, Imatrix* im);

}  // namespace oracle

#endif  // MIXQ_TOOLS_ORACLE_IMATRIX_H_
