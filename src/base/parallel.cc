#include "base/parallel.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace mixq {
namespace {

// True on the pool's workers, and on a caller's thread while it runs tasks:
// a call from there is nested and runs inline.
thread_local bool in_task = false;

void RunInline(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
}

class ThreadPool {
 public:
  ThreadPool() = default;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void Run(int64_t n_tasks, int n_threads, const std::function<void(int64_t, int)>& fn) {
    std::unique_lock<std::mutex> owner(run_mutex_, std::try_to_lock);
    if (!owner.owns_lock()) return RunInline(n_tasks, fn);  // another thread's call holds the pool
    while (static_cast<int>(workers_.size()) < n_threads - 1) {
      int index = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, index] { WorkerLoop(index); });
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_tasks_ = n_tasks;
      next_.store(0);
      active_workers_ = n_threads - 1;
      pending_ = n_threads - 1;
      ++generation_;
    }
    wake_.notify_all();
    in_task = true;
    Work(0);
    in_task = false;
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void Work(int thread) {
    for (int64_t t = next_.fetch_add(1); t < n_tasks_; t = next_.fetch_add(1)) (*fn_)(t, thread);
  }

  void WorkerLoop(int index) {
    in_task = true;
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
        if (index > active_workers_) continue;
      }
      Work(index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex run_mutex_;  // held by the one call the workers serve
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  int active_workers_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace

int ResolveThreadCount(int n_threads) {
  if (n_threads > 0) return n_threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void RunTasks(int64_t n_tasks, int n_threads, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  n_threads = static_cast<int>(std::min<int64_t>(ResolveThreadCount(n_threads), n_tasks));
  if (n_threads == 1 || in_task) return RunInline(n_tasks, fn);
  static ThreadPool pool;
  pool.Run(n_tasks, n_threads, fn);
}

}  // namespace mixq
