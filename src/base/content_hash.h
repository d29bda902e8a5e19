// ContentHasher: XXH3-128 over a stream of bytes, as 32 hex digits.
//
// Cached results (measurements, importance matrices) are keyed by the content
// hashes of what they were computed from; XXH3 reads at memory speed, so
// hashing a model costs little next to reading it once. Not cryptographic:
// it guards against accidents, not against forgery. Move-only; not
// thread-safe.
#ifndef MIXQ_BASE_CONTENT_HASH_H_
#define MIXQ_BASE_CONTENT_HASH_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

struct XXH3_state_s;

namespace mixq {

class ContentHasher {
 public:
  ContentHasher();
  ContentHasher(ContentHasher&&) noexcept;
  ContentHasher& operator=(ContentHasher&&) noexcept;
  ~ContentHasher();

  void Update(std::span<const uint8_t> bytes);
  // The values' bytes, preceded by their count so that consecutive spans
  // cannot be confused with one another.
  template <typename T>
  requires std::is_trivially_copyable_v<T>
  void UpdateValues(std::span<const T> values) {
    const uint64_t n = values.size();
    Update({reinterpret_cast<const uint8_t*>(&n), sizeof n});
    Update({reinterpret_cast<const uint8_t*>(values.data()), values.size_bytes()});
  }
  void UpdateString(std::string_view text) { UpdateValues(std::span<const char>(text.data(), text.size())); }
  // 32 lower-case hex digits; the hasher may be updated further afterwards.
  std::string HexDigest() const;

 private:
  struct StateDeleter {
    void operator()(XXH3_state_s* state) const;
  };
  std::unique_ptr<XXH3_state_s, StateDeleter> state_;
};

template <typename T>
std::string HashOfValues(std::span<const T> values) {
  ContentHasher h;
  h.UpdateValues(values);
  return h.HexDigest();
}

// What a cached result was computed from: one field per input or option that
// changes it (content hashes for data, plain values for options), by name.
// A cache is used only when its key equals the wanted one.
using CacheKey = std::map<std::string, std::string>;

// Why a cache made with `cached` cannot stand for `wanted`, in a few words
// ("calibration tokens changed"); empty when the keys are equal.
std::string StaleReason(const CacheKey& cached, const CacheKey& wanted);

}  // namespace mixq

#endif  // MIXQ_BASE_CONTENT_HASH_H_
