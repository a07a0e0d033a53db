// task_group: structured concurrency with corio::task_group (asyncio.TaskGroup).
//
//     async with asyncio.TaskGroup() as tg:        co_await corio::task_group(
//         a = tg.create_task(fetch("a"))               [&](corio::TaskGroup& tg) -> corio::Coro<> {
//         b = tg.create_task(fetch("b"))                   a = tg.create_task(fetch("a"));
//     # a and b are both done here                         b = tg.create_task(fetch("b"));
//                                                          co_return;
//                                                      });
//
// No child outlives the group. If a child fails, the group cancels the others, waits for them,
// and raises every failure together in an ExceptionGroup.
//
// The example checks what it shows and exits non-zero if corio got anything wrong.
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

// An application error (any exception type works; corio::Error is corio's `Exception`).
class NotFound : public corio::Error {
  public:
    using corio::Error::Error;
};

// Stands for fetching a page: takes `d`, or fails if the page does not exist.
corio::Coro<std::string> fetch(std::string page, corio::Duration d) {
    co_await corio::sleep(d);
    if (page == "missing") throw NotFound("404: " + page);
    co_return "<html>" + page + "</html>";
}

corio::Coro<int> amain() {
    int failures = 0;
    auto check = [&failures](bool ok, const char* what) {
        std::printf("%s %s\n", ok ? "ok:  " : "FAIL:", what);
        if (!ok) ++failures;
    };

    // 1. Every child succeeds: when task_group() returns, all of them are done.
    corio::Task<std::string> home;
    corio::Task<std::string> about;
    co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
        home = tg.create_task(fetch("home", 20ms), "fetch-home");
        about = tg.create_task(fetch("about", 10ms), "fetch-about");
        co_return;  // the group now waits for both children
    });
    check(home.done() && about.done(), "after the group, every child is done");
    check(home.result() == "<html>home</html>" && about.result() == "<html>about</html>",
          "...and their results can be read from their tasks");

    // 2. One child fails: the others are cancelled and the failure arrives in an ExceptionGroup.
    corio::Task<std::string> slow;
    corio::Task<std::string> broken;
    bool raised = false;
    try {
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            slow = tg.create_task(fetch("slow", 10s), "fetch-slow");
            broken = tg.create_task(fetch("missing", 10ms), "fetch-missing");
            co_return;
        });
    } catch (const corio::ExceptionGroup& group) {
        raised = true;
        std::printf("caught %s\n", corio::describe(std::current_exception()).c_str());
        check(group.exceptions().size() == 1, "the ExceptionGroup holds exactly one failure");
        // Each entry is a std::exception_ptr: rethrow it to catch the real type.
        bool not_found = false;
        try {
            if (!group.exceptions().empty()) std::rethrow_exception(group.exceptions()[0]);
        } catch (const NotFound& e) {
            not_found = std::string(e.what()) == "404: missing";
        } catch (...) {
        }
        check(not_found, "...and it is the child's NotFound");
    }
    check(raised, "a failing child makes task_group() raise ExceptionGroup");
    // The 10 s fetch was cancelled, not waited for: this example ends in milliseconds.
    check(slow.done() && slow.cancelled(), "the other child was cancelled");
    check(broken.done() && !broken.cancelled(), "the failing child is done, not cancelled");

    co_return failures == 0 ? 0 : 1;
}

int main() {
    return corio::run(amain());
}
