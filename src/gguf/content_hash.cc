// GgufFile::ContentHash: the file hashed piece by piece, so that hashing a
// model larger than memory keeps only one piece resident at a time.
#include "base/content_hash.h"

#include "gguf/gguf.h"

namespace mixq::gguf {

const std::string& GgufFile::ContentHash() const {
  std::call_once(content_hash_->once, [this] {
    constexpr uint64_t kPiece = uint64_t{64} << 20;
    ContentHasher hasher;
    for (uint64_t at = 0; at < bytes_.size(); at += kPiece) {
      auto piece = bytes_.subspan(at, std::min<uint64_t>(kPiece, bytes_.size() - at));
      hasher.Update(piece);
      if (mapping_) DropResidentPages(piece);
    }
    content_hash_->hex = hasher.HexDigest();
  });
  return content_hash_->hex;
}

}  // namespace mixq::gguf
