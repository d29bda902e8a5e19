// The one way to run work on several threads: a process-wide pool of worker
// threads, started on first use and kept, so that the many short parallel
// steps of a forward pass or a tensor do not each pay for starting threads.
//
// Contract (RunTasks, and ParallelFor on top of it):
// * Every task runs exactly once; the call returns when all are done. Tasks
//   are taken dynamically, and the calling thread works too.
// * Results must not depend on which thread runs a task (every caller splits
//   its work into the same tasks whatever the thread count), so outputs do not
//   depend on the thread count.
// * Safe to call from anywhere: a call made from inside a task (nested), or
//   while another thread's call holds the pool, runs its tasks in order on the
//   calling thread, as thread 0. It never waits for another call.
#ifndef MIXQ_BASE_PARALLEL_H_
#define MIXQ_BASE_PARALLEL_H_

#include <algorithm>
#include <cstdint>
#include <functional>

namespace mixq {

// n_threads, or the number of hardware threads when n_threads <= 0.
int ResolveThreadCount(int n_threads);

// Calls fn(task, thread) for every task in [0, n_tasks), with thread in
// [0, n_threads) naming the worker, so that per-thread scratch indexed by it
// is never shared by two tasks running at once. n_threads <= 0 means the
// number of hardware threads.
void RunTasks(int64_t n_tasks, int n_threads, const std::function<void(int64_t task, int thread)>& fn);

// Splits [0, n) into chunks of `chunk` (the last may be shorter) and calls
// fn(begin, end) once for each, concurrently for different chunks.
template <typename Fn>
void ParallelFor(int64_t n, int64_t chunk, int n_threads, Fn&& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  RunTasks((n + chunk - 1) / chunk, n_threads, [&](int64_t c, int) {
    const int64_t begin = c * chunk;
    fn(begin, std::min(n, begin + chunk));
  });
}

}  // namespace mixq

#endif  // MIXQ_BASE_PARALLEL_H_
