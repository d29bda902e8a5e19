#include "lgt2.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

namespace oracle {

namespace {
constexpr size_t kHeaderBytes = 4 + 6 * sizeof(uint32_t);
}

std::string Lgt2Reader::Open(const std::string& path) {
  in_.open(path, std::ios::binary);
  char magic[4];
  uint32_t h[6];
  if (!in_.read(magic, 4) || std::memcmp(magic, "LGT2", 4) != 0 || !in_.read(reinterpret_cast<char*>(h), sizeof(h))) {
    return path + " is not an LGT2 logits file";
  }
  header_ = {h[0], h[1], h[2], h[3], h[4], h[5]};
  const uint64_t n_tokens = uint64_t{header_.n_chunk} * header_.n_ctx;
  const uint64_t expected = kHeaderBytes + 4 * (n_tokens + uint64_t{header_.n_chunk} * header_.chunk_floats());
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) != expected || ec) {
    return path + ": size does not match its header (truncated LGT2 file?)";
  }
  tokens_.resize(n_tokens);
  if (!in_.read(reinterpret_cast<char*>(tokens_.data()), static_cast<std::streamsize>(n_tokens * 4))) {
    return path + ": cannot read its tokens";
  }
  return "";
}

bool Lgt2Reader::ReadChunk(uint32_t chunk, std::vector<float>* logits) {
  logits->resize(header_.chunk_floats());
  const uint64_t offset =
      kHeaderBytes + 4 * (uint64_t{header_.n_chunk} * header_.n_ctx + uint64_t{chunk} * header_.chunk_floats());
  in_.seekg(static_cast<std::streamoff>(offset));
  return static_cast<bool>(
      in_.read(reinterpret_cast<char*>(logits->data()), static_cast<std::streamsize>(logits->size() * sizeof(float))));
}

bool Lgt2Writer::Open(const std::string& path, const Lgt2Header& header, const std::vector<int32_t>& tokens) {
  path_ = path;
  tmp_ = path + ".tmp." + std::to_string(getpid());
  out_.open(tmp_, std::ios::binary | std::ios::trunc);
  const uint32_t h[6] = {header.n_ctx, header.n_chunk, header.n_vocab, header.first, header.n_scored, header.flags};
  out_.write("LGT2", 4);
  out_.write(reinterpret_cast<const char*>(h), sizeof(h));
  out_.write(reinterpret_cast<const char*>(tokens.data()),
             static_cast<std::streamsize>(size_t{header.n_chunk} * header.n_ctx * sizeof(int32_t)));
  return out_.good();
}

bool Lgt2Writer::WriteRow(const float* logits, uint32_t n_vocab) {
  out_.write(reinterpret_cast<const char*>(logits), static_cast<std::streamsize>(n_vocab * sizeof(float)));
  return out_.good();
}

bool Lgt2Writer::Close() {
  out_.close();
  if (!out_.fail() && std::rename(tmp_.c_str(), path_.c_str()) == 0) return true;
  std::remove(tmp_.c_str());
  return false;
}

}  // namespace oracle
