// A team of threads for the native recurrences: a persistent pool (started on first use) whose
// threads meet at a spin barrier once per time step.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace mlx_rnn {

// A reusable barrier for a team of n threads: spins (pause), then yields when it waits long.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait();

 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<int> generation_{0};
};

// Run fn(q, size, barrier) for q in [0, size) on size <= n threads, q = 0 on the calling thread,
// the others from the pool; returns when all have returned. size is smaller than n when the
// system refuses a thread, and 1 when another team is running (calls from several threads at
// once). fn must not throw.
void run_team(int n, const std::function<void(int, int, Barrier&)>& fn);

// The block [lo, hi) of [0, count) that thread q of n owns (contiguous, sizes differ by <= 1).
inline void team_share(int count, int q, int n, int& lo, int& hi) {
  lo = int(int64_t(count) * q / n);
  hi = int(int64_t(count) * (q + 1) / n);
}

}  // namespace mlx_rnn
