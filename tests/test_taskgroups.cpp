// corio::task_group / TaskGroup / ExceptionGroup (asyncio.TaskGroup).
//
// Mirrors CPython's Lib/test/test_asyncio/test_taskgroups.py. The tests run on a virtual clock
// (corio::VirtualClock): loop.time() stands still while code runs and jumps to the next deadline
// when the loop would wait, so children finish and fail in exactly the order of their delays,
// and elapsed times are asserted exactly. TaskGroups.ChildFailureCancelsSiblingsOnTheRealClock
// keeps real time covered, with generous bounds.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

namespace {

corio::TimePoint now() {
    return corio::get_running_loop().time();
}

corio::Duration since(corio::TimePoint t0) {
    return now() - t0;
}

// corio::run() on a virtual clock.
template <class A>
auto run_virtual(A&& main) {
    return corio::run(std::forward<A>(main),
                      corio::RunOptions{.virtual_clock = corio::VirtualClock{}});
}

// What a child went through.
struct Probe {
    bool started = false;
    bool cancelled = false;
    bool finished = false;
};

corio::Coro<int> value_after(corio::Duration d, int value) {
    co_await corio::sleep(d);
    co_return value;
}

corio::Coro<> sleeper(corio::Duration d, Probe* p) {
    p->started = true;
    try {
        co_await corio::sleep(d);
    } catch (const corio::CancelledError&) {
        p->cancelled = true;
        throw;
    }
    p->finished = true;
}

corio::Coro<> fail_after(corio::Duration d, std::string message) {
    co_await corio::sleep(d);
    throw std::runtime_error(message);
}

// Waits to be cancelled, then fails with `message` instead of CancelledError.
corio::Coro<> fail_on_cancel(std::string message, Probe* p) {
    p->started = true;
    try {
        co_await corio::sleep(10s);
    } catch (const corio::CancelledError&) {
        p->cancelled = true;
        throw std::runtime_error(message);
    }
    p->finished = true;
}

// Waits to be cancelled, then takes `cleanup` before letting the CancelledError out.
corio::Coro<> slow_cleanup(corio::Duration cleanup, Probe* p, bool* in_cleanup) {
    p->started = true;
    std::exception_ptr cancel;
    try {
        co_await corio::sleep(10s);
    } catch (const corio::CancelledError&) {
        p->cancelled = true;
        cancel = std::current_exception();
    }
    if (!cancel) co_return;
    *in_cleanup = true;
    co_await corio::sleep(cleanup);
    p->finished = true;
    std::rethrow_exception(cancel);
}

// Like slow_cleanup, but the cleanup lasts until `*release` is set.
corio::Coro<> held_cleanup(Probe* p, bool* in_cleanup, const bool* release);

corio::Coro<> mark_ran(bool* ran) {
    *ran = true;
    co_return;
}

corio::Coro<> self_cancel() {
    co_await corio::sleep(1ms);
    throw corio::CancelledError("child gives up");
}

corio::Coro<> interrupt_after(corio::Duration d) {
    co_await corio::sleep(d);
    throw corio::Interrupted();
}

corio::Coro<> cancel_group_after(corio::Duration d, corio::TaskGroup* tg) {
    co_await corio::sleep(d);
    tg->cancel();
}

// Polls `flag` until it is set (at most ~10 s, so a broken test fails instead of hanging).
corio::Coro<> wait_until(const bool* flag) {
    for (int i = 0; i < 2000 && !*flag; ++i) co_await corio::sleep(5ms);
}

corio::Coro<> held_cleanup(Probe* p, bool* in_cleanup, const bool* release) {
    p->started = true;
    std::exception_ptr cancel;
    try {
        co_await corio::sleep(10s);
    } catch (const corio::CancelledError&) {
        p->cancelled = true;
        cancel = std::current_exception();
    }
    if (!cancel) co_return;
    *in_cleanup = true;
    co_await wait_until(release);
    p->finished = true;
    std::rethrow_exception(cancel);
}

// A readable rendering of an exception, nested groups included.
std::string what_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const corio::ExceptionGroup& g) {
        std::string s = "group[";
        for (std::size_t i = 0; i < g.exceptions().size(); ++i) {
            if (i > 0) s += ",";
            s += what_of(g.exceptions()[i]);
        }
        return s + "]";
    } catch (const std::exception& x) {
        return x.what();
    } catch (const corio::CancelledError&) {
        return "CancelledError";
    } catch (const corio::Interrupted&) {
        return "Interrupted";
    } catch (...) {
        return "unknown";
    }
}

std::vector<std::string> whats(const corio::ExceptionGroup& g) {
    std::vector<std::string> out;
    for (const auto& e : g.exceptions()) out.push_back(what_of(e));
    return out;
}

using Strings = std::vector<std::string>;

}  // namespace

// --- success ----------------------------------------------------------------------------------

TEST(TaskGroups, AllChildrenCompleteBeforeTaskGroupReturns) {
    std::vector<bool> done;
    std::vector<int> results;
    std::size_t size_in_body = 0;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        std::vector<corio::Task<int>> children;
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            children.push_back(tg.create_task(value_after(30ms, 1)));
            children.push_back(tg.create_task(value_after(10ms, 2)));
            children.push_back(tg.create_task(value_after(1ms, 3)));
            size_in_body = tg.size();
            co_return;
        });
        elapsed = since(t0);
        for (auto& c : children) {
            done.push_back(c.done());
            if (c.done()) results.push_back(c.result());
        }
    }());
    EXPECT_EQ(size_in_body, 3u);
    EXPECT_EQ(done, (std::vector<bool>{true, true, true}));
    EXPECT_EQ(results, (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(elapsed, corio::Duration(30ms));  // the slowest child's delay
}

TEST(TaskGroups, BodyReturnValueIsReturned) {
    bool child_done = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        corio::Task<int> child;
        std::optional<int> v =
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<int> {
                child = tg.create_task(value_after(10ms, 5));
                co_return 42;
            });
        child_done = child.done();
        co_return v.value() + child.result();
    }());
    EXPECT_EQ(r, 47);
    EXPECT_TRUE(child_done);
}

TEST(TaskGroups, CancelledGroupWithValueBodyReturnsNoValueAndNoError) {
    bool reached_end = false;
    std::optional<int> v = run_virtual([&]() -> corio::Coro<std::optional<int>> {
        auto r = co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<int> {
            tg.create_task(corio::sleep(10s));
            tg.cancel();
            co_await corio::sleep(10s);
            reached_end = true;
            co_return 1;
        });
        // The group withdrew its own cancellation: this task is not being cancelled.
        EXPECT_EQ(corio::current_task().cancelling(), 0u);
        co_await corio::sleep(0s);
        co_return r;
    }());
    EXPECT_FALSE(v.has_value());
    EXPECT_FALSE(reached_end);
}

TEST(TaskGroups, EmptyGroupReturnsAtOnce) {
    int r = run_virtual([&]() -> corio::Coro<int> {
        auto r =
            co_await corio::task_group([](corio::TaskGroup&) -> corio::Coro<int> { co_return 3; });
        co_return r.value();
    }());
    EXPECT_EQ(r, 3);
}

TEST(TaskGroups, ChildNameIsPassedToTheTask) {
    std::string name;
    run_virtual([&]() -> corio::Coro<> {
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            auto t = tg.create_task(value_after(0s, 1), "worker-7");
            name = t.get_name();
            co_return;
        });
    }());
    EXPECT_EQ(name, "worker-7");
}

// --- failures -------------------------------------------------------------------------------

TEST(TaskGroups, ChildFailureCancelsSiblingsAndBodyAndRaisesGroup) {
    Probe sibling, body;
    bool sibling_task_cancelled = false;
    Strings errors;
    std::string group_what;
    bool rethrown_as_runtime_error = false;
    std::uint32_t cancelling_after = 99;
    bool later_sleep_ok = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        corio::Task<> sib;
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(fail_after(10ms, "boom"));
                sib = tg.create_task(sleeper(10s, &sibling));
                co_await sleeper(10s, &body);
            });
        } catch (const corio::ExceptionGroup& g) {
            errors = whats(g);
            group_what = g.what();
            try {
                std::rethrow_exception(g.exceptions().at(0));
            } catch (const std::runtime_error& e) {
                rethrown_as_runtime_error = std::string(e.what()) == "boom";
            }
        }
        elapsed = since(t0);
        sibling_task_cancelled = sib.cancelled();
        // The group withdrew the cancellation it used to interrupt the body.
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
    }());
    EXPECT_EQ(errors, Strings{"boom"});
    EXPECT_NE(group_what.find("unhandled errors in a TaskGroup"), std::string::npos) << group_what;
    EXPECT_TRUE(rethrown_as_runtime_error);
    EXPECT_TRUE(sibling.cancelled);
    EXPECT_TRUE(sibling_task_cancelled);
    EXPECT_TRUE(body.cancelled);
    EXPECT_FALSE(body.finished);
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
    EXPECT_EQ(elapsed, corio::Duration(10ms));  // the failure, not the 10 s sleeps
}

// The same on the real clock: the failure comes after 10 ms of real time.
TEST(TaskGroups, ChildFailureCancelsSiblingsOnTheRealClock) {
    Probe sibling, body;
    bool sibling_task_cancelled = false;
    Strings errors;
    std::string group_what;
    bool rethrown_as_runtime_error = false;
    std::uint32_t cancelling_after = 99;
    bool later_sleep_ok = false;
    double elapsed = 0;
    corio::run([&]() -> corio::Coro<> {
        auto t0 = now();
        corio::Task<> sib;
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(fail_after(10ms, "boom"));
                sib = tg.create_task(sleeper(10s, &sibling));
                co_await sleeper(10s, &body);
            });
        } catch (const corio::ExceptionGroup& g) {
            errors = whats(g);
            group_what = g.what();
            try {
                std::rethrow_exception(g.exceptions().at(0));
            } catch (const std::runtime_error& e) {
                rethrown_as_runtime_error = std::string(e.what()) == "boom";
            }
        }
        elapsed = std::chrono::duration<double>(since(t0)).count();
        sibling_task_cancelled = sib.cancelled();
        // The group withdrew the cancellation it used to interrupt the body.
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
    }());
    EXPECT_EQ(errors, Strings{"boom"});
    EXPECT_NE(group_what.find("unhandled errors in a TaskGroup"), std::string::npos) << group_what;
    EXPECT_TRUE(rethrown_as_runtime_error);
    EXPECT_TRUE(sibling.cancelled);
    EXPECT_TRUE(sibling_task_cancelled);
    EXPECT_TRUE(body.cancelled);
    EXPECT_FALSE(body.finished);
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
    EXPECT_GE(elapsed, 0.009);
    EXPECT_LT(elapsed, 5.0);
}

TEST(TaskGroups, ChildFailureAfterBodyReturnedCancelsTheOthers) {
    Probe sibling;
    Strings errors;
    std::uint32_t cancelling_after = 99;
    bool later_sleep_ok = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(fail_after(10ms, "late"));
                tg.create_task(sleeper(10s, &sibling));
                co_return;  // the failure comes while the group waits for its children
            });
        } catch (const corio::ExceptionGroup& g) {
            errors = whats(g);
        }
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
    }());
    EXPECT_EQ(errors, Strings{"late"});
    EXPECT_TRUE(sibling.cancelled);
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
}

TEST(TaskGroups, TwoChildFailuresAreCollectedInOrderOfFailure) {
    Probe second;
    Strings errors;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(fail_on_cancel("second", &second));
                tg.create_task(fail_after(10ms, "first"));
                co_return;
            });
        } catch (const corio::ExceptionGroup& g) {
            errors = whats(g);
        }
    }());
    EXPECT_EQ(errors, (Strings{"first", "second"}));
    EXPECT_TRUE(second.cancelled);
}

TEST(TaskGroups, ChildrenEndingCancelledAreNotErrors) {
    Probe victim, body;
    bool victim_cancelled = false;
    bool quitter_cancelled = false;
    int survivor = 0;
    bool raised = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        corio::Task<> v, q;
        corio::Task<int> s;
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                v = tg.create_task(sleeper(10s, &victim));
                q = tg.create_task(self_cancel());
                s = tg.create_task(value_after(20ms, 9));
                co_await corio::sleep(1ms);
                v.cancel();
                co_await sleeper(5ms, &body);  // the body is not disturbed
            });
        } catch (...) {
            raised = true;
        }
        elapsed = since(t0);
        victim_cancelled = v.cancelled();
        quitter_cancelled = q.cancelled();
        if (s.done()) survivor = s.result();
    }());
    EXPECT_FALSE(raised);
    EXPECT_EQ(elapsed, corio::Duration(20ms));  // the survivor's delay
    EXPECT_TRUE(victim.cancelled);
    EXPECT_TRUE(victim_cancelled);
    EXPECT_TRUE(quitter_cancelled);
    EXPECT_EQ(survivor, 9);
    EXPECT_TRUE(body.finished);
    EXPECT_FALSE(body.cancelled);
}

TEST(TaskGroups, BodyExceptionCancelsChildrenAndIsInGroup) {
    Probe running, unstarted;
    bool unstarted_task_cancelled = false;
    Strings errors;
    run_virtual([&]() -> corio::Coro<> {
        corio::Task<> late;
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(sleeper(10s, &running));
                co_await corio::sleep(1ms);
                late = tg.create_task(sleeper(10s, &unstarted));
                throw std::logic_error("body failed");
            });
        } catch (const corio::ExceptionGroup& g) {
            errors = whats(g);
        }
        unstarted_task_cancelled = late.cancelled();
    }());
    EXPECT_EQ(errors, Strings{"body failed"});
    EXPECT_TRUE(running.cancelled);
    // Cancelled before its first step: it never ran (as in asyncio).
    EXPECT_FALSE(unstarted.started);
    EXPECT_TRUE(unstarted_task_cancelled);
}

// The children's errors come first, the body's is appended last (asyncio's order).
TEST(TaskGroups, BodyExceptionAndChildErrorDuringCancellationAreBothReported) {
    Probe child;
    Strings errors;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(fail_on_cancel("child cleanup", &child));
                co_await corio::sleep(1ms);
                throw std::logic_error("body failed");
            });
        } catch (const corio::ExceptionGroup& g) {
            errors = whats(g);
        }
    }());
    EXPECT_EQ(errors, (Strings{"child cleanup", "body failed"}));
}

// --- cancellation of the parent task -----------------------------------------------------------

TEST(TaskGroups, OuterCancelCancelsChildrenAndPropagatesCancelledError) {
    Probe a, b, body;
    bool worker_saw_group = false;
    bool worker_saw_cancel = false;
    std::uint32_t cancelling_in_worker = 99;
    bool worker_cancelled = false;
    bool children_cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        corio::Task<> ta, tb;
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                    ta = tg.create_task(sleeper(10s, &a));
                    tb = tg.create_task(sleeper(10s, &b));
                    co_await sleeper(10s, &body);
                });
            } catch (const corio::ExceptionGroup&) {
                worker_saw_group = true;
                throw;
            } catch (const corio::CancelledError&) {
                worker_saw_cancel = true;
                cancelling_in_worker = corio::current_task().cancelling();
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await wait_until(&b.started);
        worker.cancel();
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
        }
        worker_cancelled = worker.cancelled();
        children_cancelled = ta.cancelled() && tb.cancelled();
    }());
    EXPECT_TRUE(a.cancelled);
    EXPECT_TRUE(b.cancelled);
    EXPECT_TRUE(body.cancelled);
    EXPECT_TRUE(children_cancelled);
    EXPECT_TRUE(worker_saw_cancel);
    EXPECT_FALSE(worker_saw_group);
    EXPECT_EQ(cancelling_in_worker, 1u);  // the outside request, still pending
    EXPECT_TRUE(worker_cancelled);
}

TEST(TaskGroups, OuterCancelAfterBodyReturnedStillPropagatesCancelledError) {
    Probe child;
    bool worker_saw_cancel = false;
    bool worker_cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                    tg.create_task(sleeper(10s, &child));
                    co_return;
                });
            } catch (const corio::CancelledError&) {
                worker_saw_cancel = true;
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await wait_until(&child.started);
        worker.cancel();
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
        }
        worker_cancelled = worker.cancelled();
    }());
    EXPECT_TRUE(child.cancelled);
    EXPECT_TRUE(worker_saw_cancel);
    EXPECT_TRUE(worker_cancelled);
}

// The parent is cancelled from outside, and a child fails while it is being cancelled: the
// errors win (ExceptionGroup), but the outside cancellation stays pending for the next await.
TEST(TaskGroups, OuterCancelWhileChildFailsRaisesGroupAndKeepsCancellationPending) {
    Probe failing, body;
    Strings errors;
    std::uint32_t cancelling_after_group = 99;
    bool next_await_cancelled = false;
    corio::Duration next_await_took = 99s;
    bool worker_cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                    tg.create_task(fail_on_cancel("cleanup failed", &failing));
                    co_await sleeper(10s, &body);
                });
            } catch (const corio::ExceptionGroup& g) {
                errors = whats(g);
            }
            cancelling_after_group = corio::current_task().cancelling();
            auto t0 = now();
            try {
                co_await corio::sleep(2s);
            } catch (const corio::CancelledError&) {
                next_await_cancelled = true;
                next_await_took = since(t0);
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await wait_until(&failing.started);
        worker.cancel();
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
        }
        worker_cancelled = worker.cancelled();
    }());
    EXPECT_EQ(errors, Strings{"cleanup failed"});
    EXPECT_TRUE(body.cancelled);
    EXPECT_EQ(cancelling_after_group, 1u);
    EXPECT_TRUE(next_await_cancelled);
    EXPECT_EQ(next_await_took, corio::Duration::zero());  // at once, not after the 2 s sleep
    EXPECT_TRUE(worker_cancelled);
}

// A child fails first; while the group waits for another child's cleanup, the parent is
// cancelled from outside. ExceptionGroup, and the outside cancellation stays pending.
TEST(TaskGroups, OuterCancelDuringAbortRaisesGroupAndKeepsCancellationPending) {
    Probe slow;
    bool in_cleanup = false;
    bool release = false;
    Strings errors;
    bool worker_saw_cancel_instead = false;
    std::uint32_t cancelling_after_group = 99;
    bool next_await_cancelled = false;
    corio::Duration next_await_took = 99s;
    run_virtual([&]() -> corio::Coro<> {
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                    tg.create_task(held_cleanup(&slow, &in_cleanup, &release));
                    tg.create_task(fail_after(5ms, "boom"));
                    co_await corio::sleep(10s);
                });
            } catch (const corio::ExceptionGroup& g) {
                errors = whats(g);
            } catch (const corio::CancelledError&) {
                worker_saw_cancel_instead = true;
                throw;
            }
            cancelling_after_group = corio::current_task().cancelling();
            auto t0 = now();
            try {
                co_await corio::sleep(2s);
            } catch (const corio::CancelledError&) {
                next_await_cancelled = true;
                next_await_took = since(t0);
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await wait_until(&in_cleanup);
        worker.cancel();  // while the group still waits for the cleanup
        release = true;
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
        }
    }());
    EXPECT_TRUE(slow.finished);  // the group waited for the cleanup
    EXPECT_EQ(errors, Strings{"boom"});
    EXPECT_FALSE(worker_saw_cancel_instead);
    EXPECT_EQ(cancelling_after_group, 1u);
    EXPECT_TRUE(next_await_cancelled);
    EXPECT_EQ(next_await_took, corio::Duration::zero());  // at once, not after the 2 s sleep
}

// --- TaskGroup::cancel ------------------------------------------------------------------------

TEST(TaskGroups, CancelFromBodyStopsEverythingAndReturnsNormally) {
    Probe a, b;
    bool body_cancelled = false;
    bool raised = false;
    corio::Duration body_await_took = 99s;
    std::uint32_t cancelling_after = 99;
    bool later_sleep_ok = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(sleeper(10s, &a));
                tg.create_task(sleeper(10s, &b));
                co_await corio::sleep(1ms);
                tg.cancel();
                auto t0 = now();
                try {
                    co_await corio::sleep(2s);
                } catch (const corio::CancelledError&) {
                    body_cancelled = true;
                    body_await_took = since(t0);
                    throw;
                }
            });
        } catch (...) {
            raised = true;
        }
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
    }());
    EXPECT_FALSE(raised);
    EXPECT_TRUE(a.cancelled);
    EXPECT_TRUE(b.cancelled);
    EXPECT_TRUE(body_cancelled);
    EXPECT_EQ(body_await_took, corio::Duration::zero());  // at once, not after the 2 s sleep
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
}

TEST(TaskGroups, CancelFromChildStopsEverythingAndReturnsNormally) {
    Probe other, body;
    bool raised = false;
    std::uint32_t cancelling_after = 99;
    bool later_sleep_ok = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(sleeper(10s, &other));
                tg.create_task(cancel_group_after(5ms, &tg));
                co_await sleeper(10s, &body);
            });
        } catch (...) {
            raised = true;
        }
        elapsed = since(t0);
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
    }());
    EXPECT_FALSE(raised);
    EXPECT_TRUE(other.cancelled);
    EXPECT_TRUE(body.cancelled);
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
    EXPECT_EQ(elapsed, corio::Duration(5ms));  // when the child cancelled the group
}

TEST(TaskGroups, CancelIsIdempotent) {
    Probe child;
    bool raised = false;
    std::uint32_t after_first = 99, after_second = 99, cancelling_after = 99;
    bool later_sleep_ok = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(sleeper(10s, &child));
                tg.cancel();
                after_first = corio::current_task().cancelling();
                tg.cancel();
                after_second = corio::current_task().cancelling();
                co_return;
            });
        } catch (...) {
            raised = true;
        }
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
    }());
    EXPECT_FALSE(raised);
    EXPECT_EQ(after_first, 1u);
    EXPECT_EQ(after_second, 1u);
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
    EXPECT_FALSE(child.started);  // cancelled before its first step
}

// tg.cancel() and the body returns without awaiting anything: the request on the parent must
// not leak past the group.
TEST(TaskGroups, CancelThenReturnWithoutAwaitingLeavesNoPendingCancellation) {
    bool raised = false;
    std::uint32_t cancelling_after = 99;
    bool later_sleep_ok = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.cancel();
                co_return;
            });
        } catch (...) {
            raised = true;
        }
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
    }());
    EXPECT_FALSE(raised);
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
}

// --- create_task when the group no longer accepts children ------------------------------------

// The TaskGroup lives inside task_group(), so "after the group finished" is observed from another
// task in the window between the last child finishing and the parent resuming: `spy` is queued
// behind the last child and runs before the parent wakes.
TEST(TaskGroups, CreateTaskAfterGroupFinishedRaisesRuntimeError) {
    bool child_ran = false;
    bool rejected_ran = false;
    bool group_returned = false;
    bool spy_ran_in_window = false;
    std::string message;
    run_virtual([&]() -> corio::Coro<> {
        corio::Task<> spy;
        auto spy_body = [&](corio::TaskGroup* tg) -> corio::Coro<> {
            if (group_returned) co_return;  // order not as expected: the group is gone
            spy_ran_in_window = true;
            try {
                tg->create_task(mark_ran(&rejected_ran));
            } catch (const corio::RuntimeError& e) {
                message = e.what();
            }
            co_return;
        };
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            tg.create_task(mark_ran(&child_ran));  // the last child: done in its first step
            spy = corio::create_task(spy_body(&tg));
            co_return;
        });
        group_returned = true;
        co_await spy;
    }());
    EXPECT_TRUE(child_ran);
    EXPECT_TRUE(spy_ran_in_window);
    EXPECT_NE(message.find("TaskGroup is finished"), std::string::npos) << message;
    EXPECT_FALSE(rejected_ran);  // the rejected coroutine never ran
}

TEST(TaskGroups, CreateTaskWhileAbortingRaisesAndCoroutineNeverRuns) {
    bool ran = false;
    bool rejected = false;
    std::string message;
    Strings errors;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(fail_after(5ms, "boom"));
                try {
                    co_await corio::sleep(10s);
                } catch (const corio::CancelledError&) {
                    try {
                        tg.create_task(mark_ran(&ran));
                    } catch (const corio::RuntimeError& e) {
                        rejected = true;
                        message = e.what();
                    }
                    throw;
                }
            });
        } catch (const corio::ExceptionGroup& g) {
            errors = whats(g);
        }
        co_await corio::sleep(5ms);  // a task created anyway would have run by now
    }());
    EXPECT_TRUE(rejected);
    EXPECT_NE(message.find("TaskGroup"), std::string::npos) << message;
    EXPECT_FALSE(ran);
    EXPECT_EQ(errors, Strings{"boom"});
}

TEST(TaskGroups, CreateTaskAfterCancelRaisesAndCoroutineNeverRuns) {
    bool ran = false;
    bool rejected = false;
    run_virtual([&]() -> corio::Coro<> {
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            tg.cancel();
            try {
                tg.create_task(mark_ran(&ran));
            } catch (const corio::RuntimeError&) {
                rejected = true;
            }
            co_return;
        });
        co_await corio::sleep(5ms);
    }());
    EXPECT_TRUE(rejected);
    EXPECT_FALSE(ran);
}

// The rejected coroutine's frame is destroyed, not leaked: its parameters are released.
TEST(TaskGroups, RejectedCoroutineIsDestroyed) {
    long uses_after = -1;
    run_virtual([&]() -> corio::Coro<> {
        auto token = std::make_shared<int>(1);
        auto holder = [](std::shared_ptr<int> keep) -> corio::Coro<> {
            (void)keep;
            co_return;
        };
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            tg.cancel();
            try {
                tg.create_task(holder(token));
            } catch (const corio::RuntimeError&) {
            }
            co_return;
        });
        uses_after = token.use_count();
    }());
    EXPECT_EQ(uses_after, 1);
}

// --- nesting and ExceptionGroup ---------------------------------------------------------------

TEST(TaskGroups, InnerGroupFailureBecomesNestedExceptionGroup) {
    Probe outer_child;
    std::string rendered;
    std::size_t outer_count = 0, inner_count = 0;
    std::string innermost;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& outer) -> corio::Coro<> {
                outer.create_task(sleeper(10s, &outer_child));
                co_await corio::task_group([&](corio::TaskGroup& inner) -> corio::Coro<> {
                    inner.create_task(fail_after(5ms, "inner boom"));
                    co_await corio::sleep(10s);
                });
            });
        } catch (const corio::ExceptionGroup& g) {
            rendered = what_of(std::current_exception());
            outer_count = g.exceptions().size();
            try {
                std::rethrow_exception(g.exceptions().at(0));
            } catch (const corio::ExceptionGroup& inner) {
                inner_count = inner.exceptions().size();
                try {
                    std::rethrow_exception(inner.exceptions().at(0));
                } catch (const std::runtime_error& e) {
                    innermost = e.what();
                }
            }
        }
    }());
    EXPECT_EQ(rendered, "group[group[inner boom]]");
    EXPECT_EQ(outer_count, 1u);
    EXPECT_EQ(inner_count, 1u);
    EXPECT_EQ(innermost, "inner boom");
    EXPECT_TRUE(outer_child.cancelled);
}

TEST(TaskGroups, InnerGroupInAChildFailsTheOuterGroup) {
    Probe outer_body, inner_sibling;
    std::string rendered;
    run_virtual([&]() -> corio::Coro<> {
        auto nested = [&]() -> corio::Coro<> {
            co_await corio::task_group([&](corio::TaskGroup& inner) -> corio::Coro<> {
                inner.create_task(sleeper(10s, &inner_sibling));
                inner.create_task(fail_after(5ms, "deep"));
                co_return;
            });
        };
        try {
            co_await corio::task_group([&](corio::TaskGroup& outer) -> corio::Coro<> {
                outer.create_task(nested());
                co_await sleeper(10s, &outer_body);
            });
        } catch (const corio::ExceptionGroup&) {
            rendered = what_of(std::current_exception());
        }
    }());
    EXPECT_EQ(rendered, "group[group[deep]]");
    EXPECT_TRUE(inner_sibling.cancelled);
    EXPECT_TRUE(outer_body.cancelled);
}

// --- no child outlives the group ----------------------------------------------------------------

TEST(TaskGroups, EveryChildIsDoneWhenTaskGroupReturns) {
    bool all_done_ok = false;
    bool all_done_failed = false;
    bool in_cleanup = false;
    Probe slow;
    corio::Duration failed_group_took{};
    run_virtual([&]() -> corio::Coro<> {
        std::vector<corio::AnyTask> ok_children;
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            for (int i = 0; i < 5; ++i) {
                ok_children.push_back(tg.create_task(value_after(std::chrono::milliseconds(i), i)));
            }
            co_return;
        });
        all_done_ok = true;
        for (auto& t : ok_children) all_done_ok = all_done_ok && t.done();

        std::vector<corio::AnyTask> failed_children;
        auto t0 = now();
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                failed_children.push_back(tg.create_task(slow_cleanup(30ms, &slow, &in_cleanup)));
                failed_children.push_back(tg.create_task(value_after(10s, 0)));
                failed_children.push_back(tg.create_task(fail_after(5ms, "x")));
                co_return;
            });
        } catch (const corio::ExceptionGroup&) {
        }
        failed_group_took = since(t0);
        all_done_failed = true;
        for (auto& t : failed_children) all_done_failed = all_done_failed && t.done();
    }());
    EXPECT_EQ(failed_group_took, corio::Duration(35ms));  // the failure at 5 ms, the 30 ms cleanup
    EXPECT_TRUE(all_done_ok);
    EXPECT_TRUE(all_done_failed);
    EXPECT_TRUE(slow.finished);
}

// --- base errors --------------------------------------------------------------------------------

TEST(TaskGroups, ChildInterruptedIsRethrownAfterCancellingTheOthers) {
    Probe sibling, body;
    bool sibling_task_cancelled = false;
    bool saw_interrupted = false;
    bool saw_group = false;
    run_virtual([&]() -> corio::Coro<> {
        corio::Task<> sib;
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                sib = tg.create_task(sleeper(10s, &sibling));
                tg.create_task(interrupt_after(5ms));
                co_await sleeper(10s, &body);
            });
        } catch (const corio::Interrupted&) {
            saw_interrupted = true;
        } catch (const corio::ExceptionGroup&) {
            saw_group = true;
        }
        sibling_task_cancelled = sib.done() && sib.cancelled();
    }());
    EXPECT_TRUE(saw_interrupted);
    EXPECT_FALSE(saw_group);
    EXPECT_TRUE(sibling.cancelled);
    EXPECT_TRUE(sibling_task_cancelled);
    EXPECT_TRUE(body.cancelled);
}

TEST(TaskGroups, BodyInterruptedIsRethrownAfterCancellingChildren) {
    Probe child;
    bool saw_interrupted = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
                tg.create_task(sleeper(10s, &child));
                co_await corio::sleep(1ms);
                throw corio::Interrupted();
            });
        } catch (const corio::Interrupted&) {
            saw_interrupted = true;
        }
    }());
    EXPECT_TRUE(saw_interrupted);
    EXPECT_TRUE(child.cancelled);
}

// --- scale
// ----------------------------------------------------------------------------------------

TEST(TaskGroups, TenThousandChildrenComplete) {
    constexpr int kChildren = 10000;
    long long sum = 0;
    std::size_t done = 0;
    run_virtual([&]() -> corio::Coro<> {
        std::vector<corio::Task<int>> children;
        children.reserve(kChildren);
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            for (int i = 0; i < kChildren; ++i)
                children.push_back(tg.create_task(value_after(0s, i)));
            co_return;
        });
        for (auto& c : children) {
            if (!c.done()) continue;
            ++done;
            sum += c.result();
        }
    }());
    EXPECT_EQ(done, static_cast<std::size_t>(kChildren));
    EXPECT_EQ(sum, static_cast<long long>(kChildren) * (kChildren - 1) / 2);
}
