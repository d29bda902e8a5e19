#include "base/content_hash.h"

#include <xxhash.h>

#include <cstdio>
#include <new>

namespace mixq {

void ContentHasher::StateDeleter::operator()(XXH3_state_s* state) const { XXH3_freeState(state); }

ContentHasher::ContentHasher() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();
  XXH3_128bits_reset(state_.get());
}
ContentHasher::ContentHasher(ContentHasher&&) noexcept = default;
ContentHasher& ContentHasher::operator=(ContentHasher&&) noexcept = default;
ContentHasher::~ContentHasher() = default;

void ContentHasher::Update(std::span<const uint8_t> bytes) {
  XXH3_128bits_update(state_.get(), bytes.data(), bytes.size());
}

std::string ContentHasher::HexDigest() const {
  const XXH128_hash_t h = XXH3_128bits_digest(state_.get());
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return hex;
}

std::string StaleReason(const CacheKey& cached, const CacheKey& wanted) {
  if (cached.empty()) return "it records no key";
  for (const auto& [field, value] : wanted) {
    auto it = cached.find(field);
    if (it == cached.end() || it->second != value) return field + " changed";
  }
  for (const auto& [field, value] : cached) {
    if (!wanted.contains(field)) return field + " changed";
  }
  return "";
}

}  // namespace mixq
