// The pool behind run_team and the barrier its threads meet at.
#include "team.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MLX_RNN_PAUSE() _mm_pause()
#else
#define MLX_RNN_PAUSE() ((void)0)
#endif

namespace mlx_rnn {

namespace {

// Wait until done(): spin (pause) a while, then yield, in case there are more threads than
// free cores and the one we wait for needs ours.
template <typename Done>
void spin_until(const Done& done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < 1000) {
      MLX_RNN_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace

void Barrier::wait() {
  const int gen = generation_.load(std::memory_order_acquire);
  if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
    count_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    return;
  }
  spin_until([&] { return generation_.load(std::memory_order_acquire) != gen; });
}

namespace {

using Job = std::function<void(int, int, Barrier&)>;

// Helper threads 1..n-1, started on first use and kept: between teams they sleep on a
// condition variable (after a short spin), so they take no CPU from the BLAS between calls.
// Each helper has its own slot; a team signals only the helpers it uses.
class Pool {
 public:
  // Start helpers up to `count` (fewer when the system refuses); returns how many there are.
  int ensure(int count) {
    while (int(slots_.size()) < count) {
      auto slot = std::make_unique<Slot>();
      Slot* s = slot.get();
      try {
        std::thread([this, s] { work(*s); }).detach();
      } catch (const std::system_error&) {
        break;
      }
      slots_.push_back(std::move(slot));
    }
    return int(slots_.size());
  }

  void run(int size, const Job& fn) {
    Barrier barrier(size);
    remaining_.store(size - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (int q = 1; q < size; ++q) {
        Slot& s = *slots_[q - 1];
        s.job = &fn, s.q = q, s.size = size, s.barrier = &barrier;
        s.go.fetch_add(1, std::memory_order_release);
      }
    }
    wake_.notify_all();
    fn(0, size, barrier);
    spin_until([&] { return remaining_.load(std::memory_order_acquire) == 0; });
  }

  std::mutex busy;  // one team at a time

 private:
  struct Slot {
    std::atomic<uint64_t> go{0};
    const Job* job = nullptr;
    int q = 0, size = 0;
    Barrier* barrier = nullptr;
  };

  void work(Slot& s) {
    uint64_t seen = 0;
    for (;;) {
      for (int spins = 0; spins < 2000 && s.go.load(std::memory_order_acquire) == seen; ++spins) {
        MLX_RNN_PAUSE();
      }
      if (s.go.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return s.go.load(std::memory_order_acquire) != seen; });
      }
      seen = s.go.load(std::memory_order_acquire);
      (*s.job)(s.q, s.size, *s.barrier);
      remaining_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::vector<std::unique_ptr<Slot>> slots_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> remaining_{0};
};

// The pool lives until the process ends (its threads sleep then; exit ends them). A child of
// fork() has none of its threads: it starts a new pool.
Pool* g_pool = nullptr;
std::once_flag g_atfork_once;

Pool& pool() {
  std::call_once(g_atfork_once, [] {
    pthread_atfork(nullptr, nullptr, [] { g_pool = nullptr; });
  });
  if (g_pool == nullptr) g_pool = new Pool();
  return *g_pool;
}

}  // namespace

void run_team(int n, const Job& fn) {
  if (n > 1) {
    Pool& p = pool();
    std::unique_lock<std::mutex> lock(p.busy, std::try_to_lock);
    if (lock.owns_lock()) {
      const int size = std::min(n, p.ensure(n - 1) + 1);
      if (size > 1) {
        p.run(size, fn);
        return;
      }
    }
  }
  Barrier solo(1);
  fn(0, 1, solo);
}

}  // namespace mlx_rnn
