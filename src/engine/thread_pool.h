// Internal: a persistent pool of worker threads for the forward pass, so that
// the many short parallel steps of a chunk do not each pay for starting
// threads. Tasks are taken dynamically; the caller's thread works too.
#ifndef MIXQ_ENGINE_THREAD_POOL_H_
#define MIXQ_ENGINE_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mixq::engine {

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

  // Calls fn(task, thread) for every task in [0, n_tasks), with thread in
  // [0, n_threads); returns when all are done. Not reentrant.
  void Run(int64_t n_tasks, int n_threads, const std::function<void(int64_t, int)>& fn) {
    if (n_tasks <= 0) return;
    n_threads = static_cast<int>(std::min<int64_t>(std::max(1, n_threads), n_tasks));
    if (n_threads == 1) {
      for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
      return;
    }
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
    Work(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void Work(int thread) {
    for (int64_t t = next_.fetch_add(1); t < n_tasks_; t = next_.fetch_add(1)) (*fn_)(t, thread);
  }

  void WorkerLoop(int index) {
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

}  // namespace mixq::engine

#endif  // MIXQ_ENGINE_THREAD_POOL_H_
