// The monitor endpoint (see monitor.hpp). The protocol is line-based text, one request
// ("snapshot") and one answer:
//
//     corio-monitor 1
//     process <pid>
//     loop <n> <backend> <running|stopped> <tid> <answered|stuck|no-answer>
//     stats <iterations> <polls> <task steps> <callbacks> <polling ns> <running ns> <longest ns>
//     stalls <threshold ns> <on-CPU x4> <off-CPU x4> <longest ns>   (with the watchdog; counts
//                                                  by length: 1-2, 2-4, 4-8, 8+ thresholds)
//     task <address> <id> <running|ready|waiting> <name>
//     frame <line> <definition line> <function>\t<file>      (innermost first)
//     awaited_by <address>
//     end
#include "monitor.hpp"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "corio/events.hpp"
#include "corio/graph.hpp"
#include "signal_safe.hpp"
#include "stacktrace.hpp"

namespace corio::detail {

FixedText& FixedText::operator<<(std::string_view s) noexcept {
    const std::size_t room = cap_ - len_;
    const std::size_t n = std::min(room, s.size());
    std::memcpy(buf_ + len_, s.data(), n);
    len_ += n;
    if (n < s.size()) truncated_ = true;
    return *this;
}

FixedText& FixedText::number(std::uint64_t v) noexcept {
    NumberBuffer buf;
    return *this << decimal(v, buf);
}

FixedText& FixedText::hex(std::uintptr_t v) noexcept {
    NumberBuffer buf;
    return *this << hexadecimal(v, buf);
}

FixedText& FixedText::field(std::string_view s) noexcept {
    for (char c : s) *this << (c == '\n' || c == '\t' || c == '\r' ? ' ' : c);
    return *this;
}

void write_loop_snapshot(EventLoop& loop, FixedText& out) noexcept {
    const LoopStats s = LoopAccess::counters(loop);
    auto ns = [](Duration d) {
        return static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
    };
    out << "stats ";
    out.number(s.iterations) << ' ';
    out.number(s.polls) << ' ';
    out.number(s.task_steps) << ' ';
    out.number(s.callbacks) << ' ';
    out.number(ns(s.time_polling)) << ' ';
    out.number(ns(s.time_running)) << ' ';
    out.number(ns(s.longest_step)) << '\n';
    if (s.stall_threshold > Duration::zero()) {
        out << "stalls ";
        out.number(ns(s.stall_threshold));
        for (const auto* counts : {&s.stalls_on_cpu, &s.stalls_off_cpu}) {
            for (std::uint64_t n : *counts) {
                out << ' ';
                out.number(n);
            }
        }
        out << ' ';
        out.number(ns(s.longest_stall)) << '\n';
    }
    const TaskCore* running = t_state.current_task;
    for (const FutureCore* c : LoopAccess::cores(loop)) {
        if (c->kind != FutureCore::Kind::Task || c->done()) continue;
        const auto* t = static_cast<const TaskCore*>(c);
        out << "task ";
        out.hex(reinterpret_cast<std::uintptr_t>(t)) << ' ';
        out.number(t->id) << ' ';
        out << (t == running ? "running" : t->queued ? "ready" : "waiting") << ' ';
        if (t->extra != nullptr && !t->extra->name.empty()) {
            out.field(t->extra->name);
        } else {
            out << "Task-";
            out.number(t->id);
        }
        out << '\n';
        walk_await_chain(*t, [&](const PromiseBase& p) {
            const FrameCallGraphEntry e = frame_entry(p);
            out << "frame ";
            out.number(e.line) << ' ';
            out.number(e.def_line) << ' ';
            out.field(e.function) << '\t';
            out.field(e.file) << '\n';
            return !out.truncated();
        });
        t->waiters.for_each([&](const DoneWaiter& w) {
            if (w.task == nullptr) return;
            out << "awaited_by ";
            out.hex(reinterpret_cast<std::uintptr_t>(w.task)) << '\n';
        });
    }
}

bool monitor_wanted(const bool* option, bool debug, bool watchdog) {
    if (option != nullptr) return *option;
    const char* env = std::getenv("CORIO_MONITOR");
    if (env != nullptr && *env != '\0') return std::strcmp(env, "0") != 0;
    return debug || watchdog;
}

std::string monitor_socket_name(long pid) {
    return "corio-monitor-" + std::to_string(pid);
}

namespace {

constexpr std::size_t kSnapshotBytes = 4 << 20;

// A loop registered with the endpoint. `loop` is cleared (under `mutex`) when it closes, so the
// endpoint thread never reaches a loop that is gone.
struct LoopEntry {
    std::mutex mutex;
    EventLoop* loop = nullptr;
    int index = 0;
    bool running = false;
    pthread_t thread{};
    long tid = 0;
};

// One request for a snapshot; shared with the callback posted to the loop, which may run after
// the endpoint gave up on it.
struct Request {
    std::vector<char> buffer = std::vector<char>(kSnapshotBytes);
    std::size_t length = 0;
    std::atomic<bool> claimed{false};  // by the callback or by the signal handler
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;

    void fill(EventLoop& loop) noexcept {
        FixedText text(buffer.data(), buffer.size());
        write_loop_snapshot(loop, text);
        length = text.view().size();
    }
};

class Endpoint {
  public:
    static Endpoint& get() {
        static Endpoint* e = new Endpoint;  // never destroyed: loops may close during exit
        return *e;
    }

    void attach(EventLoop& loop) {
        std::lock_guard lock(mutex_);
        auto entry = std::make_shared<LoopEntry>();
        entry->loop = &loop;
        entry->index = next_index_++;
        if (entries_.empty()) start();
        entries_.push_back(std::move(entry));
    }

    void detach(EventLoop& loop) noexcept {
        std::unique_lock lock(mutex_);
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            if ((*it)->loop != &loop) continue;
            {
                std::lock_guard entry_lock((*it)->mutex);
                (*it)->loop = nullptr;
            }
            entries_.erase(it);
            break;
        }
        if (entries_.empty() && listener_ >= 0) stop(lock);
    }

    void running(EventLoop& loop, bool on) noexcept {
        std::lock_guard lock(mutex_);
        for (auto& e : entries_) {
            if (e->loop != &loop) continue;
            std::lock_guard entry_lock(e->mutex);
            e->running = on;
            if (on) {
                e->thread = pthread_self();
                e->tid = static_cast<long>(::syscall(SYS_gettid));
            }
        }
    }

  private:
    void start() {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return;  // no endpoint; the loop works all the same
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string name = monitor_socket_name(static_cast<long>(::getpid()));
        std::memcpy(addr.sun_path + 1, name.data(), name.size());
        const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
        if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), size) != 0 || ::listen(fd, 8) != 0) {
            ::close(fd);
            return;
        }
        listener_ = fd;
        prepare_stack_traces();
        thread_ = std::thread([this, fd] { serve(fd); });
    }

    void stop(std::unique_lock<std::mutex>& lock) noexcept {
        const int fd = std::exchange(listener_, -1);
        ::shutdown(fd, SHUT_RDWR);  // wakes accept()
        std::thread t = std::move(thread_);
        lock.unlock();
        if (t.joinable()) t.join();
        ::close(fd);
        lock.lock();
    }

    void serve(int listener) {
        for (;;) {
            const int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                return;  // shut down
            }
            try {
                answer(client);
            } catch (...) {
                // A failed answer ends that client's connection, not the endpoint.
            }
            ::close(client);
        }
    }

    void answer(int client) {
        ucred peer{};
        socklen_t len = sizeof peer;
        if (::getsockopt(client, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) return;
        // Only this process's own user, or root, may see its tasks.
        if (peer.uid != ::getuid() && peer.uid != 0) return;
        timeval limit{5, 0};
        ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        ::setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        char request[64];
        const ssize_t n = ::recv(client, request, sizeof request - 1, 0);
        if (n <= 0 ||
            std::string_view(request, static_cast<std::size_t>(n)).rfind("snapshot", 0) != 0)
            return;

        std::vector<std::shared_ptr<LoopEntry>> entries;
        {
            std::lock_guard lock(mutex_);
            entries = entries_;
        }
        std::string out = "corio-monitor 1\nprocess " + std::to_string(::getpid()) + "\n";
        for (const auto& entry : entries) out += snapshot(*entry);
        out += "end\n";
        std::size_t sent = 0;
        while (sent < out.size()) {
            const ssize_t w = ::send(client, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
            if (w <= 0) return;
            sent += static_cast<std::size_t>(w);
        }
    }

    // The loop's part of the answer: asked of the loop itself (a callback), or, when it does not
    // answer within a second (it is stuck), taken on its thread by interrupting it.
    static std::string snapshot(LoopEntry& entry) {
        auto request = std::make_shared<Request>();
        std::string how = "answered";
        std::string head;
        bool posted = false;
        {
            std::lock_guard lock(entry.mutex);
            if (entry.loop == nullptr) return {};
            head = "loop " + std::to_string(entry.index) + " " + entry.loop->backend_name() + " " +
                   (entry.running ? "running " : "stopped ") + std::to_string(entry.tid) + " ";
            if (entry.running) {
                try {
                    entry.loop->call_soon_threadsafe([request, loop = entry.loop] {
                        if (request->claimed.exchange(true)) return;
                        request->fill(*loop);
                        std::lock_guard done_lock(request->mutex);
                        request->done = true;
                        request->done_cv.notify_all();
                    });
                    posted = true;
                } catch (...) {
                    // The loop is closing.
                }
            }
        }
        bool done = false;
        if (posted) {
            std::unique_lock lock(request->mutex);
            done = request->done_cv.wait_for(lock, std::chrono::seconds(1),
                                             [&] { return request->done; });
        }
        if (!done) {
            std::lock_guard lock(entry.mutex);
            if (entry.loop == nullptr) return {};
            if (!entry.running) {
                how = "not-running";  // its thread may be doing anything, or be gone
            } else if (!request->claimed.exchange(true)) {
                // The loop did not take the callback: it is stuck (or not running). Its thread
                // fills the snapshot in a signal handler, from wherever it is.
                struct Job {
                    Request* request;
                    EventLoop* loop;
                };
                Job job{request.get(), entry.loop};
                const bool answered = run_in_signal_handler(
                    entry.thread,
                    [](void* arg, void*) {
                        auto* j = static_cast<Job*>(arg);
                        j->request->fill(*j->loop);
                    },
                    &job, 1000);
                how = answered ? "stuck" : "no-answer";
                if (!answered) request->length = 0;
            } else {
                // The callback is filling it right now.
                std::unique_lock done_lock(request->mutex);
                request->done_cv.wait(done_lock, [&] { return request->done; });
            }
        }
        return head + how + "\n" + std::string(request->buffer.data(), request->length);
    }

    std::mutex mutex_;
    std::vector<std::shared_ptr<LoopEntry>> entries_;
    int next_index_ = 0;
    int listener_ = -1;
    std::thread thread_;
};

}  // namespace

void monitor_attach(EventLoop& loop) {
    Endpoint::get().attach(loop);
}

void monitor_detach(EventLoop& loop) noexcept {
    Endpoint::get().detach(loop);
}

void monitor_loop_running(EventLoop& loop, bool running) noexcept {
    Endpoint::get().running(loop, running);
}

}  // namespace corio::detail
