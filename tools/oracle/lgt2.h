// LGT2: the logits of an evaluation at its scored positions, so that another
// model can be compared with it position by position (tools/oracle/README.md).
//   "LGT2", u32 n_ctx, n_chunk, n_vocab, first, n_scored, flags (bit 0: BOS at chunk starts),
//   i32 tokens[n_chunk * n_ctx] (as tokenized), f32 logits[n_chunk][n_scored][n_vocab]
// all little-endian; row k of chunk c predicts tokens[c * n_ctx + first + k + 1].
#ifndef MIXQ_TOOLS_ORACLE_LGT2_H_
#define MIXQ_TOOLS_ORACLE_LGT2_H_

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace oracle {

struct Lgt2Header {
  uint32_t n_ctx = 0, n_chunk = 0, n_vocab = 0, first = 0, n_scored = 0, flags = 0;
  bool bos() const { return (flags & 1) != 0; }
  size_t chunk_floats() const { return size_t{n_scored} * n_vocab; }
};

inline constexpr uint32_t kLgt2Bos = 1;

// Reads the header and tokens at once and the logits one chunk at a time.
class Lgt2Reader {
 public:
  // "" or why the file is no LGT2 file of consistent size.
  std::string Open(const std::string& path);
  const Lgt2Header& header() const { return header_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  bool ReadChunk(uint32_t chunk, std::vector<float>* logits);

 private:
  std::ifstream in_;
  Lgt2Header header_;
  std::vector<int32_t> tokens_;
};

// Writes to a temporary name and renames it to the path when complete.
class Lgt2Writer {
 public:
  bool Open(const std::string& path, const Lgt2Header& header, const std::vector<int32_t>& tokens);
  bool WriteRow(const float* logits, uint32_t n_vocab);
  bool Close();

 private:
  std::string path_, tmp_;
  std::ofstream out_;
};

}  // namespace oracle

#endif  // MIXQ_TOOLS_ORACLE_LGT2_H_
