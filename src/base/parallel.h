// ParallelFor: splits [0, n) into chunks that worker threads take dynamically.
//
// fn(begin, end) is called for disjoint ranges covering [0, n) exactly once;
// it must be safe to call concurrently for different ranges. n_threads <= 0
// means the number of hardware threads. Returns when all chunks are done.
#ifndef MIXQ_BASE_PARALLEL_H_
#define MIXQ_BASE_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace mixq {

inline int ResolveThreadCount(int n_threads) {
  if (n_threads > 0) return n_threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

template <typename Fn>
void ParallelFor(int64_t n, int64_t chunk, int n_threads, Fn&& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  int64_t n_chunks = (n + chunk - 1) / chunk;
  int workers = static_cast<int>(std::min<int64_t>(ResolveThreadCount(n_threads), n_chunks));
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t c = next.fetch_add(1); c < n_chunks; c = next.fetch_add(1)) {
      int64_t begin = c * chunk;
      fn(begin, std::min(n, begin + chunk));
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int i = 1; i < workers; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

}  // namespace mixq

#endif  // MIXQ_BASE_PARALLEL_H_
