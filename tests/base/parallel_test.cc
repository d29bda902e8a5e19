// The one thread pool: every task once, thread indices in range, and calls
// that are nested or concurrent finish instead of waiting on each other.
#include "base/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace mixq {
namespace {

// Runs n tasks on n_threads and checks each ran once, on a thread in range.
void ExpectEachTaskOnce(int64_t n, int n_threads) {
  std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
  std::atomic<int> bad_thread{0};
  RunTasks(n, n_threads, [&](int64_t task, int thread) {
    runs[static_cast<size_t>(task)].fetch_add(1);
    if (thread < 0 || thread >= n_threads) bad_thread.fetch_add(1);
  });
  for (int64_t t = 0; t < n; ++t) EXPECT_EQ(runs[static_cast<size_t>(t)].load(), 1) << "task " << t;
  EXPECT_EQ(bad_thread.load(), 0);
}

TEST(Parallel, EveryTaskRunsOnceOnAThreadInRange) {
  ExpectEachTaskOnce(1000, 4);
  ExpectEachTaskOnce(3, 8);  // fewer tasks than threads
  ExpectEachTaskOnce(500, 2);
  ExpectEachTaskOnce(1, 1);
}

TEST(Parallel, ParallelForCoversTheRangeWithDisjointChunks) {
  std::vector<std::atomic<int>> seen(1001);
  ParallelFor(1001, 16, 3, [&](int64_t begin, int64_t end) {
    EXPECT_LE(end - begin, 16);
    EXPECT_EQ(begin % 16, 0);
    for (int64_t i = begin; i < end; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
  });
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].load(), 1) << i;
}

// A task that starts a parallel loop of its own (a pool that is not
// reentrant would deadlock here) gets it done on its own thread.
TEST(Parallel, NestedCallsRunInlineOnTheCallingThread) {
  std::atomic<int64_t> sum{0};
  std::atomic<int> foreign_thread{0};
  RunTasks(8, 4, [&](int64_t outer, int) {
    const std::thread::id me = std::this_thread::get_id();
    RunTasks(100, 4, [&](int64_t inner, int thread) {
      if (std::this_thread::get_id() != me || thread != 0) foreign_thread.fetch_add(1);
      sum.fetch_add(outer * 100 + inner);
    });
  });
  EXPECT_EQ(sum.load(), 799 * 800 / 2);
  EXPECT_EQ(foreign_thread.load(), 0);
}

// Two threads calling at once both finish, each task once.
TEST(Parallel, ConcurrentCallersFromTwoThreadsBothFinish) {
  for (int round = 0; round < 20; ++round) {
    std::thread other([] { ExpectEachTaskOnce(2000, 3); });
    ExpectEachTaskOnce(2000, 3);
    other.join();
  }
}

TEST(Parallel, ResolveThreadCountKeepsPositiveCountsAndFillsInTheMachines) {
  EXPECT_EQ(ResolveThreadCount(3), 3);
  EXPECT_GE(ResolveThreadCount(0), 1);
  EXPECT_GE(ResolveThreadCount(-1), 1);
}

}  // namespace
}  // namespace mixq
