// Running calls in other processes (concurrent.futures.ProcessPoolExecutor with
// loop.run_in_executor): for work that must be isolated from this process (it may crash, leak,
// or use a library that is not thread-safe) or that must run truly in parallel.
//
//     long count_primes(long below);                             // a plain function
//
//     corio::ProcessPoolExecutor pool(4);                        // starts 4 worker processes
//     long n = co_await corio::run_in_executor(pool, count_primes, 10'000'000L);
//
// Workers are forked copies of this program, started when the pool is created, so a job is a
// function of this very binary: a plain function, or a lambda or function object without data
// members. Its arguments and its result are copied between processes as bytes, so only what
// means the same in another process may cross: trivially copyable values without pointers,
// std::string (char pointers and std::string_view are sent as one), and std::vector,
// std::array, std::optional, std::pair, std::tuple of those. Anything else is a compile error.
//
// A job that throws raises the same exception in the awaiting task (the standard exception
// types, corio's errors and the OSError family by errno; any other type as a RuntimeError
// naming it). A worker that dies in a job (a crash, abort(), exit()) fails that job with
// BrokenProcessPool naming the signal or the exit status, and is replaced: the pool keeps
// serving. Cancellation follows ThreadPoolExecutor's: a job still queued when its task is
// cancelled never runs; a running job runs to its end, and its result is dropped.
//
// A worker is a copy of this program as it was when the pool was created (the replacements too:
// they are forked from a helper process made then, the zygote), with only the standard streams
// open, every signal handler back to its default, no signal blocked, and one thread. So: a job must
// be in code loaded by then (not a library dlopen()ed later); what the program did since (a global
// it set, a file it opened) is not seen; pthread_atfork handlers ran once, for the zygote, not for
// each worker (what they would make differ in each process, a random generator's state say, is the
// same in every worker); and a lock another thread held at that moment stays held in the workers,
// hence: create pools early, before the program starts threads. A job that calls std::exit() runs
// the program's atexit handlers and static destructors in the worker. The processes are children of
// this one, reaped by shutdown() or the destructor.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <array>
#include <bit>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/errors.hpp"
#include "corio/executors.hpp"

namespace corio {

// An executor that cannot run work any more (concurrent.futures.BrokenExecutor).
class BrokenExecutor : public RuntimeError {
  public:
    using RuntimeError::RuntimeError;
};

// A worker process died while running a job, or no worker process could be started
// (concurrent.futures.process.BrokenProcessPool). The message says which worker and how it
// ended, e.g. "worker 1234 died of signal 11 (SIGSEGV: Segmentation fault) while running a job".
class BrokenProcessPool : public BrokenExecutor {
  public:
    explicit BrokenProcessPool(const std::string& message, pid_t pid = -1, int term_signal = 0,
                               int exit_status = -1)
        : BrokenExecutor(message),
          pid_(pid),
          term_signal_(term_signal),
          exit_status_(exit_status) {}
    // The worker that died; -1 when no worker could be started.
    pid_t pid() const noexcept { return pid_; }
    // The signal that killed it, or 0.
    int term_signal() const noexcept { return term_signal_; }
    // The status it passed to exit(), or -1.
    int exit_status() const noexcept { return exit_status_; }

  private:
    pid_t pid_;
    int term_signal_;
    int exit_status_;
};

namespace detail {

// --- what crosses between processes ----------------------------------------------------------

// Trivially copyable, yet pointing into this process: meaningless in another one.
template <class T>
struct IsReferenceLike : std::false_type {};
template <class T>
struct IsReferenceLike<std::reference_wrapper<T>> : std::true_type {};
template <class C, class Traits>
struct IsReferenceLike<std::basic_string_view<C, Traits>> : std::true_type {};
template <class T, std::size_t N>
struct IsReferenceLike<std::span<T, N>> : std::true_type {};

template <class T>
inline constexpr bool is_plain_wire_v =
    std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
    !std::is_null_pointer_v<T> && !IsReferenceLike<T>::value;

// Whether a value of type T can be sent to another process (see the header comment).
template <class T>
struct IsWire : std::bool_constant<is_plain_wire_v<T>> {};
template <>
struct IsWire<std::string> : std::true_type {};
template <class T>
struct IsWire<std::vector<T>> : IsWire<T> {};
template <class T, std::size_t N>
struct IsWire<std::array<T, N>> : IsWire<T> {};
template <class T>
struct IsWire<std::optional<T>> : IsWire<T> {};
template <class A, class B>
struct IsWire<std::pair<A, B>> : std::bool_constant<IsWire<A>::value && IsWire<B>::value> {};
template <class... T>
struct IsWire<std::tuple<T...>> : std::bool_constant<(IsWire<T>::value && ...)> {};

// What an argument is sent as: text given by pointer or view travels as a std::string.
template <class T, class D = std::decay_t<T>>
using WireArg = std::conditional_t<std::is_same_v<D, const char*> || std::is_same_v<D, char*> ||
                                       std::is_same_v<D, std::string_view>,
                                   std::string, D>;

// The bytes of a message, read in the order they were written. Running short means the two
// processes disagree about the message, which is a bug: RuntimeError.
class WireReader {
  public:
    WireReader(const char* data, std::size_t size) noexcept : p_(data), end_(data + size) {}

    std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
    void take(void* out, std::size_t n) {
        if (n > remaining()) cut_short();
        if (n != 0) std::memcpy(out, p_, n);
        p_ += n;
    }
    std::uint64_t take_u64() {
        std::uint64_t n = 0;
        take(&n, sizeof n);
        return n;
    }
    // A count of items at least `item_size` bytes each that must still fit in the message.
    std::size_t take_count(std::size_t item_size) {
        const std::uint64_t n = take_u64();
        if (item_size != 0 && n > remaining() / item_size) cut_short();
        return static_cast<std::size_t>(n);
    }
    std::string take_string() {
        const std::size_t n = take_count(1);
        std::string s(p_, n);
        p_ += n;
        return s;
    }

  private:
    [[noreturn]] static void cut_short();

    const char* p_;
    const char* end_;
};

inline void put_u64(std::string& out, std::uint64_t n) {
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
}

inline void put_string(std::string& out, std::string_view s) {
    put_u64(out, s.size());
    out.append(s.data(), s.size());
}

// Writes and reads one value of a type IsWire accepts. Plain values travel as their bytes.
template <class T>
struct Codec {
    static void put(std::string& out, const T& v) {
        out.append(reinterpret_cast<const char*>(std::addressof(v)), sizeof(T));
    }
    static T get(WireReader& in) {
        std::array<std::byte, sizeof(T)> raw;
        in.take(raw.data(), raw.size());
        return std::bit_cast<T>(raw);
    }
};

template <>
struct Codec<std::string> {
    static void put(std::string& out, const std::string& s) { put_string(out, s); }
    static std::string get(WireReader& in) { return in.take_string(); }
};

template <class T>
struct Codec<std::vector<T>> {
    // A buffer of plain values travels in one piece (vector<bool> has no buffer).
    static constexpr bool bulk = std::is_trivially_copyable_v<T> &&
                                 std::is_default_constructible_v<T> && !std::is_same_v<T, bool>;

    static void put(std::string& out, const std::vector<T>& v) {
        put_u64(out, v.size());
        if constexpr (bulk) {
            out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
        } else {
            for (const T& item : v) Codec<T>::put(out, item);
        }
    }
    static std::vector<T> get(WireReader& in) {
        if constexpr (bulk) {
            std::vector<T> v(in.take_count(sizeof(T)));
            in.take(v.data(), v.size() * sizeof(T));
            return v;
        } else {
            const std::size_t n = in.take_count(0);
            std::vector<T> v;
            v.reserve(std::min(n, in.remaining()));
            for (std::size_t i = 0; i < n; ++i) v.push_back(Codec<T>::get(in));
            return v;
        }
    }
};

template <class T, std::size_t N>
struct Codec<std::array<T, N>> {
    static void put(std::string& out, const std::array<T, N>& a) {
        if constexpr (std::is_trivially_copyable_v<T>) {
            out.append(reinterpret_cast<const char*>(&a), sizeof a);
        } else {
            for (const T& item : a) Codec<T>::put(out, item);
        }
    }
    static std::array<T, N> get(WireReader& in) {
        if constexpr (std::is_trivially_copyable_v<T>) {
            std::array<std::byte, sizeof(std::array<T, N>)> raw;
            in.take(raw.data(), raw.size());
            return std::bit_cast<std::array<T, N>>(raw);
        } else {
            return get_each(in, std::make_index_sequence<N>());
        }
    }

  private:
    template <std::size_t... I>
    static std::array<T, N> get_each(WireReader& in, std::index_sequence<I...>) {
        return std::array<T, N>{((void)I, Codec<T>::get(in))...};  // in order, as braced
    }
};

template <class T>
struct Codec<std::optional<T>> {
    static void put(std::string& out, const std::optional<T>& v) {
        out.push_back(v.has_value() ? '\1' : '\0');
        if (v) Codec<T>::put(out, *v);
    }
    static std::optional<T> get(WireReader& in) {
        char present = 0;
        in.take(&present, 1);
        if (present == 0) return std::nullopt;
        return Codec<T>::get(in);
    }
};

template <class A, class B>
struct Codec<std::pair<A, B>> {
    static void put(std::string& out, const std::pair<A, B>& p) {
        Codec<A>::put(out, p.first);
        Codec<B>::put(out, p.second);
    }
    static std::pair<A, B> get(WireReader& in) {
        return std::pair<A, B>{Codec<A>::get(in), Codec<B>::get(in)};  // in order, as braced
    }
};

template <class... T>
struct Codec<std::tuple<T...>> {
    static void put(std::string& out, const std::tuple<T...>& t) {
        std::apply([&out](const T&... item) { (Codec<T>::put(out, item), ...); }, t);
    }
    static std::tuple<T...> get(WireReader& in) {
        return std::tuple<T...>{Codec<T>::get(in)...};  // in order, as braced
    }
};

// --- jobs --------------------------------------------------------------------------------------

template <class F>
inline constexpr bool is_function_pointer_v =
    std::conjunction_v<std::is_pointer<F>, std::is_function<std::remove_pointer_t<F>>>;

// A callable the worker can make for itself: a function pointer (sent as its address, which is
// the same in a forked copy of the program), or an empty class it default-constructs.
template <class F>
inline constexpr bool is_stateless_job_v = is_function_pointer_v<F> ||
                                           (std::is_class_v<F> && std::is_empty_v<F> &&
                                            std::is_default_constructible_v<F> &&
                                            std::is_trivially_copyable_v<F>);

template <bool Callable, class F, class... A>
struct JobResult {
    using type = void;
};
template <class F, class... A>
struct JobResult<true, F, A...> {
    using type = std::decay_t<std::invoke_result_t<F&, A...>>;
};

// What a worker runs for a request: reads the callable and the arguments, calls, writes the
// result. An exception leaves `out` to the worker, which reports it instead.
using JobEntry = void (*)(WireReader& in, std::string& out);

template <class F>
F make_callable([[maybe_unused]] WireReader& in) {
    if constexpr (is_function_pointer_v<F>) {
        F p = nullptr;
        in.take(&p, sizeof p);
        return p;
    } else {
        return F{};
    }
}

template <class F, class R, class... A>
void run_job(WireReader& in, std::string& out) {
    F f = make_callable<F>(in);
    std::tuple<A...> args{Codec<A>::get(in)...};  // in order, as braced
    if constexpr (std::is_void_v<R>) {
        std::apply(f, std::move(args));
    } else {
        Codec<R>::put(out, std::apply(f, std::move(args)));
    }
}

template <class W, class T>
void put_arg(std::string& out, T&& arg) {
    if constexpr (std::is_same_v<std::decay_t<T>, W>) {
        Codec<W>::put(out, arg);
    } else {
        if constexpr (std::is_pointer_v<std::remove_cvref_t<T>>) {  // (not an array)
            if (arg == nullptr) throw ValueError("a null char pointer cannot be sent to a worker");
        }
        Codec<W>::put(out, W(std::forward<T>(arg)));
    }
}

// A request: its length, the entry the worker runs, the callable, the arguments.
template <class F, class R, class... A, class... Args>
std::string encode_job(F f, Args&&... args) {
    std::string out(sizeof(std::uint64_t), '\0');  // the length, filled in last
    const JobEntry entry = &run_job<F, R, A...>;
    out.append(reinterpret_cast<const char*>(&entry), sizeof entry);
    if constexpr (is_function_pointer_v<F>) {
        if (f == nullptr) throw ValueError("run_in_executor() of a null function pointer");
        out.append(reinterpret_cast<const char*>(&f), sizeof f);
    }
    (put_arg<A>(out, std::forward<Args>(args)), ...);
    const std::uint64_t length = out.size() - sizeof(std::uint64_t);
    std::memcpy(out.data(), &length, sizeof length);
    return out;
}

class ProcessPoolCore;

// Runs the request on a free worker, blocking the calling (pool) thread until it answers.
// Returns the reply, whose first byte is the status and the rest the result; raises the job's
// exception, or BrokenProcessPool.
std::string process_pool_call(ProcessPoolCore& core, const std::string& request);

template <class R>
R decode_result(const std::string& reply) {
    if constexpr (!std::is_void_v<R>) {
        WireReader in(reply.data() + 1, reply.size() - 1);
        return Codec<R>::get(in);
    }
}

// What run_in_executor returns for a job the static_asserts rejected: awaitable, so that the
// compiler stops at the assertion's message instead of adding errors of its own.
struct RejectedJob {
    bool await_ready() const noexcept { return true; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    void await_resume() const noexcept {}
};

struct ProcessPoolAccess;

}  // namespace detail

// A pool of worker processes that run jobs (concurrent.futures.ProcessPoolExecutor). The
// max_workers processes start with the pool, and a worker that dies is replaced. Jobs are
// awaited with run_in_executor:
//
//     corio::ProcessPoolExecutor pool;                              // one worker per usable CPU
//     std::vector<std::byte> out = co_await corio::run_in_executor(pool, compress, data);
//
// Create pools early, before the program starts threads of its own: a worker is a copy of the
// program as it was then, and a lock that another thread held at that moment stays held in it.
// Thread-safe.
class ProcessPoolExecutor {
  public:
    // The CPUs this process may run on (Python's os.process_cpu_count()).
    static std::size_t default_max_workers() noexcept;

    // Starts the worker processes. ValueError for 0; OSError if a process cannot be started.
    explicit ProcessPoolExecutor(std::size_t max_workers = default_max_workers());
    ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
    ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;
    // shutdown(): waits for the queued jobs, then ends and reaps every process of the pool.
    ~ProcessPoolExecutor();

    // Refuses new jobs (run_in_executor then raises RuntimeError). With `wait`, returns once
    // every queued job has run (or, with `cancel_pending`, been dropped: its task gets
    // CancelledError) and every process of the pool has ended and been reaped; without, the
    // processes are reaped by a later shutdown() or the destructor. Safe to call more than once.
    // Blocks the calling thread while it waits, as ThreadPoolExecutor's does.
    void shutdown(bool wait = true, bool cancel_pending = false);

    std::size_t max_workers() const noexcept { return threads_.max_workers(); }

    // The process ids of the live workers (for diagnostics and tests); empty after shutdown.
    std::vector<pid_t> worker_pids() const;

  private:
    friend struct detail::ProcessPoolAccess;

    std::unique_ptr<detail::ProcessPoolCore> core_;
    // One thread per worker: each takes a queued job, hands it to a free worker and waits for
    // the answer, so that queueing, cancellation and delivery are ThreadPoolExecutor's.
    ThreadPoolExecutor threads_;
    std::mutex shutdown_mutex_;
};

namespace detail {

struct ProcessPoolAccess {
    static ProcessPoolCore& core(ProcessPoolExecutor& p) noexcept { return *p.core_; }
    static ThreadPoolExecutor& threads(ProcessPoolExecutor& p) noexcept { return p.threads_; }
};

}  // namespace detail

// Runs f(args...) in a worker process of `executor` and waits for its result
// (loop.run_in_executor with a ProcessPoolExecutor). The arguments are copied into the request
// at once, so nothing refers to the caller's variables afterwards.
//
//     std::string s = co_await corio::run_in_executor(pool, render, page_id, "en");
template <class F, class... Args>
auto run_in_executor(ProcessPoolExecutor& executor, F f, Args&&... args) {
    constexpr bool stateless = detail::is_stateless_job_v<F>;
    constexpr bool args_ok = (detail::IsWire<detail::WireArg<Args>>::value && ...);
    constexpr bool callable =
        stateless && args_ok && std::is_invocable_v<F&, detail::WireArg<Args>...>;
    using R = typename detail::JobResult<callable, F, detail::WireArg<Args>...>::type;
    constexpr bool result_ok = std::is_void_v<R> || detail::IsWire<R>::value;

    static_assert(stateless,
                  "a ProcessPoolExecutor job cannot capture state: pass a plain function, or a "
                  "lambda or function object without data members (the worker process "
                  "default-constructs it), and give it its data as arguments");
    static_assert(args_ok,
                  "a ProcessPoolExecutor job's arguments must mean the same in another process: "
                  "trivially copyable values without pointers, std::string (char pointers and "
                  "std::string_view are sent as one), or std::vector, std::array, "
                  "std::optional, std::pair, std::tuple of those");
    static_assert(!(stateless && args_ok) || callable,
                  "a ProcessPoolExecutor job must be callable with its arguments as rvalues of "
                  "the types sent (a non-const reference parameter cannot see what another "
                  "process does)");
    static_assert(result_ok,
                  "a ProcessPoolExecutor job's result must be void or mean the same in another "
                  "process: a trivially copyable value without pointers, std::string, or "
                  "std::vector, std::array, std::optional, std::pair, std::tuple of those");

    if constexpr (stateless && args_ok && callable && result_ok) {
        std::string request =
            detail::encode_job<F, R, detail::WireArg<Args>...>(f, std::forward<Args>(args)...);
        detail::ProcessPoolCore* core = &detail::ProcessPoolAccess::core(executor);
        auto call = [core, request = std::move(request)]() -> R {
            const std::string reply = detail::process_pool_call(*core, request);
            return detail::decode_result<R>(reply);
        };
        return run_in_executor(detail::ProcessPoolAccess::threads(executor), std::move(call));
    } else {
        return detail::RejectedJob{};
    }
}

}  // namespace corio
