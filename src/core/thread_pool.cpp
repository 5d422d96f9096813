#include "core/thread_pool.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <climits>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

// How long an idle thread spins (pause), then yields the core, before it sleeps. The spin
// covers the gap between two ops of a forward pass without a system call (decoding the
// 0.5B model on a 2-core EPYC, 2 threads: 97% of the gaps under 16 us, 99.9% under 64); the yields keep the thread ready for the next op while giving the core to any
// thread that needs it (a pool thread holding a chunk, the GPU's driver, a server's I/O);
// after both, the thread sleeps until woken, and an idle pool costs nothing.
constexpr auto kSpin = std::chrono::microseconds(50);
constexpr auto kSpinAndYield = std::chrono::microseconds(1000);

// Waits until ready() by spinning (when `spin`), then yielding; false once the budget is
// spent.
template <typename Ready>
bool spin_then_yield(bool spin, const Ready& ready) {
  if (ready()) return true;
  const Clock::time_point start = Clock::now();
  for (int i = 1; spin; ++i) {
    _mm_pause();
    if (ready()) return true;
    if ((i & 63) == 0 && Clock::now() - start > kSpin) break;
  }
  for (;;) {
    sched_yield();
    if (ready()) return true;
    if (Clock::now() - start > kSpinAndYield) return false;
  }
}

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free);

// Sleeps while *word == expected (returns at once if it already differs, or spuriously).
void futex_wait(std::atomic<uint32_t>& word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>& word, int count) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

// The job word's fields.
constexpr uint32_t chunk_count(uint64_t word) { return static_cast<uint32_t>(word >> 16) & 0xFFFF; }
constexpr uint32_t next_chunk(uint64_t word) { return static_cast<uint32_t>(word) & 0xFFFF; }
constexpr uint32_t unclaimed(uint64_t word) {
  return next_chunk(word) < chunk_count(word) ? chunk_count(word) - next_chunk(word) : 0;
}

void warn_if_oversubscribed(int n_threads) {
  static std::atomic<int> warned{0};  // the largest count warned about
  const int usable = default_thread_count();
  if (n_threads <= usable) return;
  int seen = warned.load();
  while (n_threads > seen) {
    if (warned.compare_exchange_weak(seen, n_threads)) {
      std::fprintf(stderr, "warning: %d threads for %d usable CPU cores: the extra threads share cores\n", n_threads,
                   usable);
      return;
    }
  }
}

}  // namespace

// Sleeping and waking, and why no wake-up is lost (every access below is seq_cst):
//  - An idle worker registers in sleepers_, reads wake_, then checks the job word and
//    stopping_; it sleeps only if both say "nothing", in futex_wait(wake_, value read).
//    The caller publishes the job word, then reads sleepers_; if non-zero it bumps wake_
//    and wakes one. In the single order of these operations, either the caller's read of
//    sleepers_ comes before the worker's registration — then the worker's later check
//    sees the job — or it sees the worker, bumps wake_, and the worker's futex_wait
//    either finds wake_ changed (returns at once) or is already queued and is woken.
//  - The caller, waiting for the last chunk, sets caller_sleeping_, then reads done_,
//    and sleeps in futex_wait(done_, value read) only if chunks remain; a thread that
//    finishes a chunk increments done_, then reads caller_sleeping_, and wakes the caller
//    when it finished the last one. Same argument: one of the two sees the other.
// No job depends on a wake-up for completion anyway: the caller claims chunks too, so a
// job whose workers all sleep still finishes, on the caller alone.

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads), spin_(n_threads <= default_thread_count()) {
  if (n_threads < 1 || n_threads > 1024) fail("thread count {} is out of range (1..1024)", n_threads);
  warn_if_oversubscribed(n_threads);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stopping_.store(true);
  wake_.fetch_add(1);
  futex_wake(wake_, INT_MAX);
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::wake_one_sleeper() {
  wake_.fetch_add(1);
  futex_wake(wake_, 1);
}

void ThreadPool::run_chunks(int index) {
  uint64_t word = job_.load(std::memory_order_acquire);
  for (;;) {
    if (unclaimed(word) == 0) return;
    // Claim chunk next_chunk(word) of this very job (generation and all), or reload.
    if (!job_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    const int64_t begin = static_cast<int64_t>(next_chunk(word)) * job_chunk_;
    job_call_(job_fn_, index, begin, std::min(job_n_, begin + job_chunk_));
    if (done_.fetch_add(1) + 1 == chunk_count(word) && caller_sleeping_.load() != 0) futex_wake(done_, 1);
    word = job_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker_loop(int index) {
  // seq_cst loads (plain loads on x86): the sleep path below relies on their order.
  const auto ready = [this] { return unclaimed(job_.load()) != 0 || stopping_.load(); };
  for (;;) {
    if (!spin_then_yield(spin_, ready)) {
      for (;;) {
        sleepers_.fetch_add(1);
        const uint32_t seen = wake_.load();
        if (ready()) {
          sleepers_.fetch_sub(1);
          break;
        }
        futex_wait(wake_, seen);
        sleepers_.fetch_sub(1);
        // Woken for a job: wake one more sleeper if chunks remain beyond the one this
        // thread is about to take (a chain, so a big pool wakes only as many as the job
        // can use, and the caller pays for one wake-up).
        const uint32_t left = unclaimed(job_.load());
        if (left > 1 && sleepers_.load() > 0) wake_one_sleeper();
        if (left != 0 || stopping_.load()) break;
      }
    }
    if (stopping_.load()) return;
    run_chunks(index);
  }
}

void ThreadPool::run(int64_t n, int64_t grain, const void* fn, Call call) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t target = (n + 4 * n_threads_ - 1) / (4 * n_threads_);  // ~4 chunks per thread
  const int64_t chunk = std::max(grain, (target + grain - 1) / grain * grain);
  const int64_t n_chunks = (n + chunk - 1) / chunk;  // <= 4 * n_threads_ <= 4096: fits 16 bits
  if (n_threads_ == 1 || n_chunks == 1) {
    call(fn, 0, 0, n);
    return;
  }
  job_fn_ = fn;
  job_call_ = call;
  job_n_ = n;
  job_chunk_ = chunk;
  done_.store(0, std::memory_order_relaxed);  // published by the job word's store
  const uint64_t generation = (job_.load(std::memory_order_relaxed) >> 32) + 1;
  job_.store(generation << 32 | static_cast<uint64_t>(n_chunks) << 16);
  if (sleepers_.load() > 0) wake_one_sleeper();
  run_chunks(0);
  const auto count = static_cast<uint32_t>(n_chunks);
  if (spin_then_yield(spin_, [&] { return done_.load(std::memory_order_acquire) == count; })) return;
  for (;;) {
    caller_sleeping_.store(1);
    const uint32_t done = done_.load();
    if (done == count) break;
    futex_wait(done_, done);
  }
  caller_sleeping_.store(0);
}

std::vector<int> parse_cpu_list(std::string_view text) {
  std::vector<int> ids;
  std::string s(text);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  if (s.empty()) return ids;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    int lo = 0, hi = 0;
    char dash = 0;
    std::stringstream range(part);
    if (!(range >> lo)) fail("CPU list '{}': '{}' is not a CPU number or range", s, part);
    hi = lo;
    if (range >> dash) {
      if (dash != '-' || !(range >> hi) || hi < lo) fail("CPU list '{}': bad range '{}'", s, part);
    }
    if (lo < 0 || hi >= 65536 || !range.eof()) fail("CPU list '{}': bad entry '{}'", s, part);
    for (int id = lo; id <= hi; ++id) ids.push_back(id);
  }
  return ids;
}

namespace {

// CPUs granted by a quota of `quota` per `period` (rounded up), or INT_MAX for none.
int quota_cpus(std::string_view quota, std::string_view period) {
  std::stringstream q{std::string(quota)}, p{std::string(period)};
  long long qv = 0, pv = 0;
  if (!(q >> qv) || qv <= 0 || !(p >> pv) || pv <= 0) return INT_MAX;  // "max", -1, or unreadable
  return static_cast<int>(std::min<long long>(INT_MAX, (qv + pv - 1) / pv));
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

int usable_cpus(const CpuInventory& inventory) {
  std::set<std::vector<int>> cores;  // each allowed CPU's sibling set
  for (size_t i = 0; i < inventory.allowed.size(); ++i) {
    std::vector<int> siblings;
    try {
      if (i < inventory.siblings.size()) siblings = parse_cpu_list(inventory.siblings[i]);
    } catch (const Error&) {
      siblings.clear();
    }
    if (std::find(siblings.begin(), siblings.end(), inventory.allowed[i]) == siblings.end()) {
      siblings = {inventory.allowed[i]};  // unknown or inconsistent: a core of its own
    }
    cores.insert(siblings);
  }
  int n = std::max<int>(1, static_cast<int>(cores.size()));
  for (const std::string& max : inventory.cgroup_cpu_max) {
    std::stringstream in(max);
    std::string quota, period = "100000";
    in >> quota >> period;
    n = std::min(n, quota_cpus(quota, period));
  }
  for (const auto& [quota, period] : inventory.cfs_quota_period) n = std::min(n, quota_cpus(quota, period));
  return std::max(1, n);
}

CpuInventory read_cpu_inventory() {
  CpuInventory inv;
  constexpr int kMaxCpus = 8192;
  cpu_set_t* set = CPU_ALLOC(kMaxCpus);
  const size_t set_bytes = CPU_ALLOC_SIZE(kMaxCpus);
  if (set != nullptr && sched_getaffinity(0, set_bytes, set) == 0) {
    for (int cpu = 0; cpu < kMaxCpus; ++cpu) {
      if (CPU_ISSET_S(cpu, set_bytes, set)) inv.allowed.push_back(cpu);
    }
  }
  if (set != nullptr) CPU_FREE(set);
  if (inv.allowed.empty()) {
    for (unsigned cpu = 0; cpu < std::max(1u, std::thread::hardware_concurrency()); ++cpu) inv.allowed.push_back(static_cast<int>(cpu));
  }
  for (int cpu : inv.allowed) {
    const std::string topology = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::string siblings = read_text(topology + "thread_siblings_list");
    if (siblings.empty()) siblings = read_text(topology + "core_cpus_list");
    inv.siblings.push_back(siblings);
  }
  // The process's cgroups (/proc/self/cgroup lines "id:controllers:path"); the quota of the
  // cgroup and of each ancestor applies.
  std::ifstream cgroups("/proc/self/cgroup");
  std::string line;
  while (std::getline(cgroups, line)) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    const bool v2 = line.compare(0, a, "0") == 0 && controllers.empty();
    bool v1_cpu = false;
    std::stringstream list(controllers);
    for (std::string c; std::getline(list, c, ',');) v1_cpu |= c == "cpu";
    if (!v2 && !v1_cpu) continue;
    for (;;) {
      if (v2) {
        const std::string max = read_text("/sys/fs/cgroup" + path + "/cpu.max");
        if (!max.empty()) inv.cgroup_cpu_max.push_back(max);
      } else {
        for (const char* mount : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"}) {
          const std::string dir = mount + path;
          const std::string quota = read_text(dir + "/cpu.cfs_quota_us");
          if (!quota.empty()) {
            inv.cfs_quota_period.emplace_back(quota, read_text(dir + "/cpu.cfs_period_us"));
            break;
          }
        }
      }
      if (path.empty() || path == "/") break;
      const size_t slash = path.find_last_of('/');
      path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
    }
  }
  return inv;
}

int default_thread_count() {
  static const int n = usable_cpus(read_cpu_inventory());
  return n;
}

}  // namespace tandem
