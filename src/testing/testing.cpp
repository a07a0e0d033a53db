#include "corio/testing.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace corio::testing::detail {
namespace {

// The descriptors open in this process, with what each refers to.
std::map<int, std::string> open_descriptors() {
    std::map<int, std::string> fds;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return fds;
    const int own = ::dirfd(dir);
    while (const dirent* entry = ::readdir(dir)) {
        char* end = nullptr;
        const long fd = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || fd == own) continue;
        char target[512];
        const std::string link = "/proc/self/fd/" + std::string(entry->d_name);
        const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
        fds[static_cast<int>(fd)] = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
    }
    ::closedir(dir);
    return fds;
}

std::string basename_of(const char* path) {
    std::string p = path != nullptr ? path : "?";
    const auto slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

// "name (coroutine fn at file.cpp:12, last co_await at line 20)"
std::string describe_task(corio::detail::TaskCore& t) {
    const SourceLocation c = t.coroutine();
    std::ostringstream out;
    out << t.name() << " (coroutine " << (c.function != nullptr ? c.function : "?") << " at "
        << basename_of(c.file) << ":" << c.line;
    const auto& p = static_cast<corio::detail::PromiseBase&>(t);
    if (t.started && p.suspended_line != 0) out << ", last co_await at line " << p.suspended_line;
    out << ")";
    return out.str();
}

std::string describe_context(const ExceptionContext& ctx) {
    std::string s = ctx.message;
    if (!ctx.task.empty()) {
        s += " [task " + ctx.task;
        if (ctx.coroutine.function != nullptr) {
            s += ", coroutine " + std::string(ctx.coroutine.function) + " at " +
                 basename_of(ctx.coroutine.file) + ":" + std::to_string(ctx.coroutine.line);
        }
        s += "]";
    }
    if (ctx.exception) s += ": " + describe(ctx.exception);
    return s;
}

// Awaits every task, whatever it ends with: the cleanup of the tasks a body left behind.
Coro<> settle_all(std::vector<AnyTask> tasks) {
    for (AnyTask& t : tasks) {
        try {
            co_await t;
        } catch (...) {
        }
    }
}

}  // namespace

void run_checked(const Options& options, const std::function<AnyTask(EventLoop&)>& make_task) {
    std::map<int, std::string> fds_before;
    if (options.check_descriptors) fds_before = open_descriptors();
    std::vector<std::string> reports;
    {
        EventLoop loop(LoopOptions{options.backend, options.debug, options.virtual_clock});
        loop.set_exception_handler([&reports](EventLoop&, const ExceptionContext& ctx) {
            reports.push_back(describe_context(ctx));
        });
        AnyTask body = make_task(loop);
        bool timed_out = false;
        std::string where_at_timeout;
        TimerHandle deadline;
        if (options.timeout) {
            deadline = loop.call_later(*options.timeout, [&] {
                timed_out = true;
                where_at_timeout = describe_task(*body.core());
                body.cancel("corio::testing: the test timed out");
            });
        }
        try {
            loop.run_until_complete(body);
        } catch (const AssertionAbort&) {
            // CORIO_ASSERT recorded the failure.
        } catch (...) {
            if (!timed_out) {
                ADD_FAILURE() << "the test body raised " << describe(std::current_exception());
            }
        }
        // Also when the body swallowed the cancellation and returned.
        if (timed_out) {
            ADD_FAILURE() << "the test body timed out after "
                          << std::chrono::duration<double>(*options.timeout).count()
                          << " s and was cancelled; it was at " << where_at_timeout;
        }
        deadline.cancel();

        if (options.check_callbacks) {
            const auto p = corio::detail::LoopAccess::pending(loop);
            if (p.callbacks + p.timers + p.readers + p.writers > 0) {
                ADD_FAILURE() << "the test body left work on the loop: " << p.callbacks
                              << " callback(s) scheduled, " << p.timers
                              << " call_later/call_at timer(s) armed, " << p.readers
                              << " reader(s) and " << p.writers << " writer(s) watched";
            }
        }

        std::vector<AnyTask> left;
        for (corio::detail::FutureCore* c : corio::detail::LoopAccess::cores(loop)) {
            if (c->kind == corio::detail::FutureCore::Kind::Task && !c->done())
                left.emplace_back(static_cast<corio::detail::TaskCore*>(c));
        }
        if (!left.empty()) {
            if (options.check_tasks) {
                std::string names;
                for (AnyTask& t : left) names += "\n  - " + describe_task(*t.core());
                ADD_FAILURE() << "the test body left " << left.size()
                              << " task(s) running (now cancelled):" << names;
            }
            for (AnyTask& t : left) t.cancel();
            loop.run_until_complete(settle_all(left));
        }
        left.clear();
        body = AnyTask();
        loop.close();  // frees what is left; unretrieved exceptions are reported here at the latest
    }
    if (options.check_exceptions && !reports.empty()) {
        std::string all;
        for (const std::string& r : reports) all += "\n  - " + r;
        ADD_FAILURE() << "the loop reported " << reports.size() << " error(s):" << all;
    }
    if (options.check_descriptors) {
        std::string opened;
        for (const auto& [fd, target] : open_descriptors()) {
            auto it = fds_before.find(fd);
            if (it == fds_before.end() || it->second != target)
                opened += "\n  - fd " + std::to_string(fd) + " -> " + target;
        }
        if (!opened.empty()) ADD_FAILURE() << "the test body left descriptors open:" << opened;
    }
}

}  // namespace corio::testing::detail
