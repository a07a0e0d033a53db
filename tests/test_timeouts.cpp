// corio::timeout / timeout_at / Timeout / wait_for (asyncio.timeouts and asyncio.wait_for).
//
// Mirrors CPython's Lib/test/test_asyncio/test_timeouts.py and the wait_for parts of
// test_waitfor.py. The tests run on a virtual clock (corio::VirtualClock): loop.time() stands
// still while code runs and jumps to the next deadline when the loop would wait, so deadlines
// fire in exactly the order their times give, elapsed times are asserted exactly, and an hour
// costs nothing. The tests named ...OnTheRealClock keep real time covered, with generous bounds.
#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

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

// Sleeps for `d` and returns `value`; records whether the sleep was cancelled, and rethrows.
corio::Coro<int> sleep_then(corio::Duration d, int value, bool* saw_cancel) {
    try {
        co_await corio::sleep(d);
    } catch (const corio::CancelledError&) {
        *saw_cancel = true;
        throw;
    }
    co_return value;
}

// Sleeps for `d`, but swallows a cancellation and returns `value` anyway.
corio::Coro<int> swallow_cancel(corio::Duration d, int value, bool* swallowed) {
    try {
        co_await corio::sleep(d);
    } catch (const corio::CancelledError&) {
        *swallowed = true;
    }
    co_return value;
}

corio::Coro<int> value_now(int value, bool* ran) {
    *ran = true;
    co_return value;
}

corio::Coro<int> fail_after(corio::Duration d) {
    co_await corio::sleep(d);
    throw std::logic_error("inner failure");
}

}  // namespace

// --- timeout(): in time ---------------------------------------------------------------------

TEST(Timeouts, ReturnsBodyValueWhenInTime) {
    bool expired_inside = true;
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::timeout(10s, [&](corio::Timeout& t) -> corio::Coro<int> {
            co_await corio::sleep(1ms);
            expired_inside = t.expired();
            co_return 42;
        });
    }());
    EXPECT_EQ(r, 42);
    EXPECT_FALSE(expired_inside);
}

TEST(Timeouts, VoidBodyInTimeCompletes) {
    bool finished = false;
    run_virtual([&]() -> corio::Coro<> {
        co_await corio::timeout(10s, [&]() -> corio::Coro<> {
            co_await corio::sleep(1ms);
            finished = true;
        });
    }());
    EXPECT_TRUE(finished);
}

// --- timeout(): expiry ----------------------------------------------------------------------

TEST(Timeouts, ExpiryRaisesTimeoutErrorAndBodySawCancelledError) {
    bool body_saw_cancel = false;
    bool timed_out = false;
    bool reached_after_sleep = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        try {
            co_await corio::timeout(30s, [&]() -> corio::Coro<> {
                try {
                    co_await corio::sleep(1h);
                    reached_after_sleep = true;
                } catch (const corio::CancelledError&) {
                    body_saw_cancel = true;
                    throw;
                }
            });
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        elapsed = since(t0);
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(body_saw_cancel);
    EXPECT_FALSE(reached_after_sleep);
    EXPECT_EQ(elapsed, corio::Duration(30s));
}

// The same on the real clock: the deadline passes in real time.
TEST(Timeouts, ExpiryRaisesTimeoutErrorOnTheRealClock) {
    bool body_saw_cancel = false;
    bool timed_out = false;
    bool reached_after_sleep = false;
    double elapsed = 0;
    corio::run([&]() -> corio::Coro<> {
        auto t0 = now();
        try {
            co_await corio::timeout(20ms, [&]() -> corio::Coro<> {
                try {
                    co_await corio::sleep(10s);
                    reached_after_sleep = true;
                } catch (const corio::CancelledError&) {
                    body_saw_cancel = true;
                    throw;
                }
            });
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        elapsed = std::chrono::duration<double>(since(t0)).count();
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(body_saw_cancel);
    EXPECT_FALSE(reached_after_sleep);
    EXPECT_GE(elapsed, 0.019);
    EXPECT_LT(elapsed, 5.0);
}

// On the virtual clock the deadline is exact to the nanosecond: work due a nanosecond before it
// finishes, work due a nanosecond after it is cancelled.
TEST(Timeouts, DeadlineIsExactToTheNanosecond) {
    bool saw_cancel = false;
    bool timed_out = false;
    corio::Duration elapsed{};
    int r = run_virtual([&]() -> corio::Coro<int> {
        auto t0 = now();
        int v = co_await corio::timeout(10s, sleep_then(10s - 1ns, 1, &saw_cancel));
        EXPECT_EQ(since(t0), corio::Duration(10s - 1ns));
        EXPECT_FALSE(saw_cancel);
        t0 = now();
        try {
            co_await corio::timeout(10s, sleep_then(10s + 1ns, 2, &saw_cancel));
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        elapsed = since(t0);
        co_return v;
    }());
    EXPECT_EQ(r, 1);
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(elapsed, corio::Duration(10s));
}

// A body that finishes in time, on the real clock.
TEST(Timeouts, BodyInTimeOnTheRealClock) {
    double elapsed = 0;
    int r = corio::run([&]() -> corio::Coro<int> {
        auto t0 = now();
        int v = co_await corio::timeout(10s, [&]() -> corio::Coro<int> {
            co_await corio::sleep(20ms);
            co_return 42;
        });
        elapsed = std::chrono::duration<double>(since(t0)).count();
        co_return v;
    }());
    EXPECT_EQ(r, 42);
    EXPECT_GE(elapsed, 0.019);
    EXPECT_LT(elapsed, 5.0);
}

TEST(Timeouts, TimeoutErrorIsACorioError) {
    bool caught_as_error = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::timeout(20ms, corio::sleep(10s));
        } catch (const corio::Error&) {
            caught_as_error = true;
        }
    }());
    EXPECT_TRUE(caught_as_error);
}

TEST(Timeouts, CancellingCountIsRestoredAfterTimeout) {
    std::uint32_t before = 99, after = 99;
    bool later_sleep_ok = false;
    bool task_cancelled = true;
    run_virtual([&]() -> corio::Coro<> {
        auto self = corio::current_task();
        before = self.cancelling();
        try {
            co_await corio::timeout(20ms, corio::sleep(10s));
        } catch (const corio::TimeoutError&) {
        }
        after = self.cancelling();
        // The timeout's cancellation was fully consumed: the task goes on normally.
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
        task_cancelled = self.cancelled();
    }());
    EXPECT_EQ(before, 0u);
    EXPECT_EQ(after, 0u);
    EXPECT_TRUE(later_sleep_ok);
    EXPECT_FALSE(task_cancelled);
}

TEST(Timeouts, TaskThatTimedOutInternallyIsNotCancelled) {
    bool has_timeout = false;
    bool cancelled = true;
    bool done = false;
    run_virtual([&]() -> corio::Coro<> {
        auto t_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::timeout(1ms, corio::sleep(10s));
            } catch (const corio::TimeoutError&) {
                has_timeout = true;
            }
        };
        auto t = corio::create_task(t_body());
        co_await t;
        cancelled = t.cancelled();
        done = t.done();
    }());
    EXPECT_TRUE(has_timeout);
    EXPECT_FALSE(cancelled);
    EXPECT_TRUE(done);
}

// A cancellation requested earlier and caught (cancelling() == 1, never uncancelled) must not
// stop a later timeout from turning its own expiry into TimeoutError (test_timeout_after_...).
TEST(Timeouts, TimeoutAfterCaughtCancellationStillRaisesTimeoutError) {
    bool first_cancel_caught = false;
    bool timed_out = false;
    std::uint32_t cancelling_after = 99;
    run_virtual([&]() -> corio::Coro<> {
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::sleep(10s);
            } catch (const corio::CancelledError&) {
                first_cancel_caught = true;
            }
            try {
                co_await corio::timeout(0s, corio::sleep(10s));
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            cancelling_after = corio::current_task().cancelling();
        };
        auto worker = corio::create_task(worker_body());
        co_await corio::sleep(0s);  // let the worker reach its first sleep
        worker.cancel();
        co_await worker;
    }());
    EXPECT_TRUE(first_cancel_caught);
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(cancelling_after, 1u);
}

// --- timeout(): cancellation from elsewhere -------------------------------------------------

TEST(Timeouts, OuterCancelPropagatesAsCancelledErrorNotTimeoutError) {
    bool body_saw_cancel = false;
    bool worker_saw_timeout = false;
    bool worker_saw_cancel = false;
    bool main_saw_cancel = false;
    bool worker_cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::timeout(10s, sleep_then(10s, 0, &body_saw_cancel));
            } catch (const corio::TimeoutError&) {
                worker_saw_timeout = true;
                throw;
            } catch (const corio::CancelledError&) {
                worker_saw_cancel = true;
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await corio::sleep(0s);  // the worker is now inside the scope
        worker.cancel();
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
            main_saw_cancel = true;
        }
        worker_cancelled = worker.cancelled();
    }());
    EXPECT_TRUE(body_saw_cancel);
    EXPECT_TRUE(worker_saw_cancel);
    EXPECT_FALSE(worker_saw_timeout);
    EXPECT_TRUE(main_saw_cancel);
    EXPECT_TRUE(worker_cancelled);
}

// The task requests its own cancellation inside the scope (test_foreign_cancel_doesnt_timeout_
// if_not_expired): the next await raises CancelledError at once and the scope did not expire.
TEST(Timeouts, ForeignCancelInsideScopeIsNotATimeout) {
    bool saw_cancel = false;
    bool saw_timeout = false;
    bool expired_in_handler = true;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::timeout(2s, [&](corio::Timeout& t) -> corio::Coro<> {
                corio::current_task().cancel();
                try {
                    co_await corio::sleep(10s);
                } catch (const corio::CancelledError&) {
                    expired_in_handler = t.expired();
                    throw;
                }
            });
        } catch (const corio::CancelledError&) {
            saw_cancel = true;
        } catch (const corio::TimeoutError&) {
            saw_timeout = true;
        }
    }());
    EXPECT_TRUE(saw_cancel);
    EXPECT_FALSE(saw_timeout);
    EXPECT_FALSE(expired_in_handler);
}

// Outer cancel first; while the body still handles it, the deadline passes too. The outer
// cancellation is still pending (cancelling() stays above the scope's), so CancelledError wins.
TEST(Timeouts, OuterCancelThenDeadlineWhileHandlingStaysCancelledError) {
    bool outer_cancel_seen = false;
    bool deadline_cancel_seen = false;
    bool expired_in_handler = false;
    bool worker_saw_timeout = false;
    bool worker_cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::timeout(10s, [&](corio::Timeout& t) -> corio::Coro<> {
                    try {
                        co_await corio::sleep(10s);
                    } catch (const corio::CancelledError&) {
                        outer_cancel_seen = true;
                    }
                    if (!outer_cancel_seen) co_return;
                    t.reschedule(now());  // the deadline passes during the cleanup
                    try {
                        co_await corio::sleep(10s);
                    } catch (const corio::CancelledError&) {
                        deadline_cancel_seen = true;
                        expired_in_handler = t.expired();
                        throw;
                    }
                });
            } catch (const corio::TimeoutError&) {
                worker_saw_timeout = true;
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await corio::sleep(0s);
        worker.cancel();
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
        }
        worker_cancelled = worker.cancelled();
    }());
    EXPECT_TRUE(outer_cancel_seen);
    EXPECT_TRUE(deadline_cancel_seen);
    EXPECT_TRUE(expired_in_handler);
    EXPECT_FALSE(worker_saw_timeout);
    EXPECT_TRUE(worker_cancelled);
}

// Deadline first; while the body handles the scope's cancellation, the task is cancelled from
// outside. Two requests, one withdrawn by the scope: CancelledError propagates.
TEST(Timeouts, DeadlineThenOuterCancelWhileHandlingStaysCancelledError) {
    bool in_handler = false;
    bool worker_saw_timeout = false;
    bool worker_cancelled = false;
    std::uint32_t cancelling_after = 99;
    run_virtual([&]() -> corio::Coro<> {
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::timeout(20ms, [&]() -> corio::Coro<> {
                    try {
                        co_await corio::sleep(10s);
                    } catch (const corio::CancelledError&) {
                        in_handler = true;
                    }
                    if (in_handler) co_await corio::sleep(10s);  // cleanup, cancelled from outside
                });
            } catch (const corio::TimeoutError&) {
                worker_saw_timeout = true;
                throw;
            } catch (const corio::CancelledError&) {
                cancelling_after = corio::current_task().cancelling();
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await corio::sleep(30ms);  // the deadline (20 ms) has passed: the worker is cleaning up
        EXPECT_TRUE(in_handler);
        worker.cancel();
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
        }
        worker_cancelled = worker.cancelled();
    }());
    EXPECT_TRUE(in_handler);
    EXPECT_FALSE(worker_saw_timeout);
    EXPECT_TRUE(worker_cancelled);
    EXPECT_EQ(cancelling_after, 1u);  // the scope withdrew its own request only
}

// --- nested timeouts ------------------------------------------------------------------------

TEST(Timeouts, InnerExpiryRaisesTimeoutErrorInInnerOnly) {
    bool inner_timed_out = false;
    bool outer_expired = true;
    corio::Duration inner_took{};
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::timeout(10s, [&](corio::Timeout& outer) -> corio::Coro<int> {
            auto t0 = now();
            try {
                co_await corio::timeout(20ms, corio::sleep(10s));
            } catch (const corio::TimeoutError&) {
                inner_timed_out = true;
            }
            inner_took = since(t0);
            co_await corio::sleep(1ms);  // the outer scope and the task go on
            outer_expired = outer.expired();
            co_return 7;
        });
    }());
    EXPECT_EQ(r, 7);
    EXPECT_TRUE(inner_timed_out);
    EXPECT_EQ(inner_took, corio::Duration(20ms));
    EXPECT_FALSE(outer_expired);
}

TEST(Timeouts, OuterExpiryInsideInnerRaisesTimeoutErrorFromOuter) {
    bool inner_body_saw_cancel = false;
    bool inner_expired = true;
    bool inner_let_cancel_through = false;
    bool inner_raised_timeout = false;
    bool outer_timed_out = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        try {
            co_await corio::timeout(20ms, [&]() -> corio::Coro<> {
                try {
                    co_await corio::timeout(10s, [&](corio::Timeout& inner) -> corio::Coro<> {
                        try {
                            co_await corio::sleep(10s);
                        } catch (const corio::CancelledError&) {
                            inner_body_saw_cancel = true;
                            inner_expired = inner.expired();
                            throw;
                        }
                    });
                } catch (const corio::CancelledError&) {
                    inner_let_cancel_through = true;
                    throw;
                } catch (const corio::TimeoutError&) {
                    inner_raised_timeout = true;
                    throw;
                }
            });
        } catch (const corio::TimeoutError&) {
            outer_timed_out = true;
        }
        elapsed = since(t0);
    }());
    EXPECT_EQ(elapsed, corio::Duration(20ms));  // the outer deadline, not the inner one
    EXPECT_TRUE(inner_body_saw_cancel);
    EXPECT_FALSE(inner_expired);
    EXPECT_TRUE(inner_let_cancel_through);
    EXPECT_FALSE(inner_raised_timeout);
    EXPECT_TRUE(outer_timed_out);
}

// Both deadlines pass before the task runs again (test_nested_timeouts_loop_busy): the inner
// scope sees a second request pending and lets the CancelledError through, the outer raises
// TimeoutError. As in asyncio, the two requests arrive as one CancelledError: a cleanup await in
// the body after catching it is not cancelled a second time.
TEST(Timeouts, BothDeadlinesPassingTogetherGiveOneCancelAndOuterTimeoutError) {
    bool body_saw_cancel = false;
    bool cleanup_finished = false;
    bool inner_let_cancel_through = false;
    bool outer_timed_out = false;
    std::uint32_t cancelling_after = 99;
    run_virtual([&]() -> corio::Coro<> {
        auto deadline = now() - 1s;
        try {
            co_await corio::timeout_at(deadline, [&]() -> corio::Coro<> {
                try {
                    co_await corio::timeout_at(deadline, [&]() -> corio::Coro<> {
                        std::exception_ptr cancel;
                        try {
                            co_await corio::sleep(10s);
                        } catch (const corio::CancelledError&) {
                            body_saw_cancel = true;
                            cancel = std::current_exception();
                        }
                        if (!cancel) co_return;
                        co_await corio::sleep(0s);  // cleanup
                        cleanup_finished = true;
                        std::rethrow_exception(cancel);
                    });
                } catch (const corio::CancelledError&) {
                    inner_let_cancel_through = true;
                    throw;
                }
            });
        } catch (const corio::TimeoutError&) {
            outer_timed_out = true;
        }
        cancelling_after = corio::current_task().cancelling();
    }());
    EXPECT_TRUE(body_saw_cancel);
    EXPECT_TRUE(cleanup_finished);
    EXPECT_TRUE(inner_let_cancel_through);
    EXPECT_TRUE(outer_timed_out);
    EXPECT_EQ(cancelling_after, 0u);
}

// --- no deadline, reschedule, when, expired -------------------------------------------------

TEST(Timeouts, NulloptNeverExpires) {
    bool when_is_none = false;
    bool expired = true;
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::timeout(std::nullopt, [&](corio::Timeout& t) -> corio::Coro<int> {
            when_is_none = !t.when().has_value();
            co_await corio::sleep(1h);
            expired = t.expired();
            co_return 5;
        });
    }());
    EXPECT_EQ(r, 5);
    EXPECT_TRUE(when_is_none);
    EXPECT_FALSE(expired);
}

TEST(Timeouts, TimeoutAtNulloptNeverExpires) {
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::timeout_at(std::nullopt, [&]() -> corio::Coro<int> {
            co_await corio::sleep(1h);
            co_return 6;
        });
    }());
    EXPECT_EQ(r, 6);
}

TEST(Timeouts, WhenReportsTheDeadline) {
    bool when_at_matches = false;
    bool when_is_now_plus_delay = false;
    run_virtual([&]() -> corio::Coro<> {
        auto deadline = now() + 10s;
        co_await corio::timeout_at(deadline, [&](corio::Timeout& t) -> corio::Coro<> {
            when_at_matches = t.when() == deadline;
            co_return;
        });
        auto before = now();
        co_await corio::timeout(10s, [&](corio::Timeout& t) -> corio::Coro<> {
            when_is_now_plus_delay = t.when() == before + 10s;  // the clock stood still
            co_return;
        });
    }());
    EXPECT_TRUE(when_at_matches);
    EXPECT_TRUE(when_is_now_plus_delay);
}

TEST(Timeouts, RescheduleLaterLetsBodyFinish) {
    bool when_updated = false;
    bool expired = true;
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::timeout(20ms, [&](corio::Timeout& t) -> corio::Coro<int> {
            auto later = now() + 10s;
            t.reschedule(later);
            when_updated = t.when() == later;
            co_await corio::sleep(5s);  // well past the original deadline, before the new one
            expired = t.expired();
            co_return 1;
        });
    }());
    EXPECT_EQ(r, 1);
    EXPECT_TRUE(when_updated);
    EXPECT_FALSE(expired);
}

TEST(Timeouts, RescheduleToNulloptDisablesTheDeadline) {
    bool when_is_none = false;
    bool expired = true;
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::timeout(20ms, [&](corio::Timeout& t) -> corio::Coro<int> {
            t.reschedule(std::nullopt);
            when_is_none = !t.when().has_value();
            co_await corio::sleep(1h);
            expired = t.expired();
            co_return 2;
        });
    }());
    EXPECT_EQ(r, 2);
    EXPECT_TRUE(when_is_none);
    EXPECT_FALSE(expired);
}

TEST(Timeouts, RescheduleEarlierExpiresSooner) {
    bool timed_out = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        try {
            co_await corio::timeout(1h, [&](corio::Timeout& t) -> corio::Coro<> {
                t.reschedule(now() + 10ms);
                co_await corio::sleep(10s);
            });
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        elapsed = since(t0);
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(elapsed, corio::Duration(10ms));
}

TEST(Timeouts, ExpiredIsFalseBeforeAndTrueAfterExpiry) {
    bool expired_before = true;
    bool expired_after = false;
    bool state_expiring = false;
    bool timed_out = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::timeout(20ms, [&](corio::Timeout& t) -> corio::Coro<> {
                expired_before = t.expired();
                try {
                    co_await corio::sleep(10s);
                } catch (const corio::CancelledError&) {
                    expired_after = t.expired();
                    state_expiring = t.state() == corio::Timeout::State::Expiring;
                    throw;
                }
            });
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
    }());
    EXPECT_FALSE(expired_before);
    EXPECT_TRUE(expired_after);
    EXPECT_TRUE(state_expiring);
    EXPECT_TRUE(timed_out);
}

// test_timeout_expiring: once the deadline has passed the deadline can no longer be moved.
TEST(Timeouts, RescheduleAfterExpiryRaisesRuntimeError) {
    bool reschedule_failed = false;
    bool timed_out = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::timeout(20ms, [&](corio::Timeout& t) -> corio::Coro<> {
                try {
                    co_await corio::sleep(10s);
                } catch (const corio::CancelledError&) {
                    try {
                        t.reschedule(now() + 10s);
                    } catch (const corio::RuntimeError&) {
                        reschedule_failed = true;
                    }
                    throw;
                }
            });
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
    }());
    EXPECT_TRUE(reschedule_failed);
    EXPECT_TRUE(timed_out);
}

// The Timeout a body sees is destroyed when timeout() returns, so the states before entry and
// after exit (test_timeout_not_entered, test_timeout_finished, test_timeout_double_enter) are
// reached through the scope protocol that timeout_at() drives.
TEST(Timeouts, RescheduleOutsideTheScopeRaisesRuntimeError) {
    bool not_entered_error = false;
    bool double_enter_error = false;
    bool exited = false;
    bool after_exit_error = false;
    bool outside_task_error = false;
    run_virtual([&]() -> corio::Coro<> {
        corio::Timeout scope(now() + 10s);
        try {
            scope.reschedule(now() + 20s);
        } catch (const corio::RuntimeError&) {
            not_entered_error = true;
        }
        scope.enter();
        try {
            scope.enter();
        } catch (const corio::RuntimeError&) {
            double_enter_error = true;
        }
        std::exception_ptr none;
        scope.exit(none);
        exited = scope.state() == corio::Timeout::State::Exited && !none;
        try {
            scope.reschedule(now() + 20s);
        } catch (const corio::RuntimeError&) {
            after_exit_error = true;
        }
        co_return;
    }());
    corio::Timeout loose(std::nullopt);
    try {
        loose.enter();
    } catch (const corio::RuntimeError&) {
        outside_task_error = true;
    }
    EXPECT_TRUE(not_entered_error);
    EXPECT_TRUE(double_enter_error);
    EXPECT_TRUE(exited);
    EXPECT_TRUE(after_exit_error);
    EXPECT_TRUE(outside_task_error);
}

// --- timeout_at ------------------------------------------------------------------------------

TEST(Timeouts, TimeoutAtInThePastExpiresAtFirstSuspension) {
    bool ran_until_suspension = false;
    bool resumed_normally = false;
    bool timed_out = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        try {
            co_await corio::timeout_at(now() - 1s, [&]() -> corio::Coro<> {
                ran_until_suspension = true;
                co_await corio::sleep(10s);
                resumed_normally = true;
            });
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        elapsed = since(t0);
    }());
    EXPECT_TRUE(ran_until_suspension);
    EXPECT_FALSE(resumed_normally);
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(elapsed, corio::Duration::zero());  // at once, not after the 10 s sleep
}

// A deadline that is already due only acts when the body suspends: a body that never does
// finishes normally (asyncio's handler is scheduled with call_soon and cancelled at exit).
TEST(Timeouts, PastDeadlineDoesNotAffectBodyThatNeverSuspends) {
    bool ran = false;
    bool later_sleep_ok = false;
    std::uint32_t cancelling_after = 99;
    int r = run_virtual([&]() -> corio::Coro<int> {
        int v = co_await corio::timeout_at(now() - 1s, value_now(3, &ran));
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
        co_return v;
    }());
    EXPECT_EQ(r, 3);
    EXPECT_TRUE(ran);
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
}

// --- a body that handles its own cancellation -------------------------------------------------

// asyncio raises TimeoutError only if a CancelledError leaves the body; a body that swallows the
// cancellation and returns normally makes the scope return its value.
TEST(Timeouts, BodySwallowingCancellationAfterExpiryReturnsNormally) {
    bool swallowed = false;
    bool expired_at_return = false;
    std::uint32_t cancelling_after = 99;
    bool later_sleep_ok = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        int v = co_await corio::timeout(20ms, [&](corio::Timeout& t) -> corio::Coro<int> {
            int x = co_await swallow_cancel(10s, 9, &swallowed);
            expired_at_return = t.expired();
            co_return x;
        });
        cancelling_after = corio::current_task().cancelling();
        co_await corio::sleep(1ms);
        later_sleep_ok = true;
        co_return v;
    }());
    EXPECT_EQ(r, 9);
    EXPECT_TRUE(swallowed);
    EXPECT_TRUE(expired_at_return);
    EXPECT_EQ(cancelling_after, 0u);
    EXPECT_TRUE(later_sleep_ok);
}

// test_foreign_exception_passed / test_foreign_exception_on_timeout: a non-cancellation error
// leaves the scope unchanged, before or after the deadline.
TEST(Timeouts, ForeignExceptionPassesThrough) {
    bool before_deadline = false;
    bool after_deadline = false;
    bool expired_before = true;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::timeout(10s, [&](corio::Timeout& t) -> corio::Coro<> {
                expired_before = t.expired();
                throw std::logic_error("before");
                co_return;
            });
        } catch (const std::logic_error& e) {
            before_deadline = std::string(e.what()) == "before";
        }
        try {
            co_await corio::timeout(20ms, [&]() -> corio::Coro<> {
                try {
                    co_await corio::sleep(10s);
                } catch (const corio::CancelledError&) {
                    throw std::logic_error("after");
                }
            });
        } catch (const std::logic_error& e) {
            after_deadline = std::string(e.what()) == "after";
        }
    }());
    EXPECT_TRUE(before_deadline);
    EXPECT_TRUE(after_deadline);
    EXPECT_FALSE(expired_before);
}

// --- body forms -----------------------------------------------------------------------------

TEST(Timeouts, BodyAsCallableTakingTimeout) {
    bool got_scope = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::timeout(10s, [&](corio::Timeout& t) -> corio::Coro<int> {
            got_scope = t.state() == corio::Timeout::State::Entered;
            co_await corio::sleep(1ms);
            co_return 11;
        });
    }());
    EXPECT_EQ(r, 11);
    EXPECT_TRUE(got_scope);
}

TEST(Timeouts, BodyAsPlainAwaitable) {
    bool saw_cancel = false;
    bool timed_out = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        int v = co_await corio::timeout(10s, sleep_then(1ms, 12, &saw_cancel));
        try {
            co_await corio::timeout(20ms, sleep_then(10s, 0, &saw_cancel));
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        co_return v;
    }());
    EXPECT_EQ(r, 12);
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(timed_out);
}

TEST(Timeouts, BodyAsZeroArgumentCallable) {
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::timeout(10s, []() -> corio::Coro<int> {
            co_await corio::sleep(1ms);
            co_return 13;
        });
    }());
    EXPECT_EQ(r, 13);
}

TEST(Timeouts, BodyAsTaskIsAwaitedAndCancelledOnExpiry) {
    bool saw_cancel = false;
    bool timed_out = false;
    bool task_cancelled = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        auto quick = corio::create_task(sleep_then(1ms, 14, &saw_cancel));
        int v = co_await corio::timeout(10s, quick);
        auto slow = corio::create_task(sleep_then(10s, 0, &saw_cancel));
        try {
            co_await corio::timeout(20ms, slow);
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        task_cancelled = slow.cancelled();
        co_return v;
    }());
    EXPECT_EQ(r, 14);
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(task_cancelled);
}

// --- wait_for -------------------------------------------------------------------------------

TEST(WaitFor, ReturnsValueInTime) {
    bool saw_cancel = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::wait_for(sleep_then(1ms, 42, &saw_cancel), 10s);
    }());
    EXPECT_EQ(r, 42);
    EXPECT_FALSE(saw_cancel);
}

TEST(WaitFor, ReturnsTaskValueInTime) {
    int r = run_virtual([&]() -> corio::Coro<int> {
        bool saw_cancel = false;
        auto t = corio::create_task(sleep_then(1ms, 43, &saw_cancel));
        co_return co_await corio::wait_for(t, 10s);
    }());
    EXPECT_EQ(r, 43);
}

TEST(WaitFor, ExpiryRaisesTimeoutErrorAndCancelsCoroutine) {
    bool saw_cancel = false;
    bool timed_out = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        try {
            co_await corio::wait_for(sleep_then(1h, 0, &saw_cancel), 5s);
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        elapsed = since(t0);
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(saw_cancel);
    EXPECT_EQ(elapsed, corio::Duration(5s));
}

TEST(WaitFor, ExpiryRaisesTimeoutErrorOnTheRealClock) {
    bool saw_cancel = false;
    bool timed_out = false;
    double elapsed = 0;
    corio::run([&]() -> corio::Coro<> {
        auto t0 = now();
        try {
            co_await corio::wait_for(sleep_then(10s, 0, &saw_cancel), 20ms);
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        elapsed = std::chrono::duration<double>(since(t0)).count();
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(saw_cancel);
    EXPECT_GE(elapsed, 0.019);
    EXPECT_LT(elapsed, 5.0);
}

TEST(WaitFor, ExpiryCancelsTaskAndWaitsForIt) {
    bool saw_cancel = false;
    bool timed_out = false;
    bool done_at_timeout = false;
    bool cancelled_at_timeout = false;
    run_virtual([&]() -> corio::Coro<> {
        auto t = corio::create_task(sleep_then(10s, 0, &saw_cancel));
        try {
            co_await corio::wait_for(t, 20ms);
        } catch (const corio::TimeoutError&) {
            timed_out = true;
            done_at_timeout = t.done();
            cancelled_at_timeout = t.cancelled();
        }
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(done_at_timeout);
    EXPECT_TRUE(cancelled_at_timeout);
}

// test_wait_for_waits_for_task_cancellation: the TimeoutError comes only after the inner task
// has finished its cleanup.
TEST(WaitFor, ExpiryWaitsForInnerCleanup) {
    bool cleanup_done = false;
    bool cleanup_done_at_timeout = false;
    bool timed_out = false;
    corio::Duration elapsed{};
    run_virtual([&]() -> corio::Coro<> {
        auto t0 = now();
        auto t_body = [&]() -> corio::Coro<> {
            std::exception_ptr cancel;
            try {
                co_await corio::sleep(10s);
            } catch (const corio::CancelledError&) {
                cancel = std::current_exception();
            }
            if (!cancel) co_return;
            co_await corio::sleep(10ms);  // cleanup
            cleanup_done = true;
            std::rethrow_exception(cancel);
        };
        auto t = corio::create_task(t_body());
        try {
            co_await corio::wait_for(t, 20ms);
        } catch (const corio::TimeoutError&) {
            timed_out = true;
            cleanup_done_at_timeout = cleanup_done;
        }
        elapsed = since(t0);
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(cleanup_done_at_timeout);
    EXPECT_EQ(elapsed, corio::Duration(30ms));  // the 20 ms deadline, then the 10 ms cleanup
}

TEST(WaitFor, InnerErrorPropagates) {
    bool caught = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::wait_for(fail_after(1ms), 10s);
        } catch (const std::logic_error&) {
            caught = true;
        }
    }());
    EXPECT_TRUE(caught);
}

TEST(WaitFor, ZeroTimeoutOnPendingTaskCancelsItAndRaisesTimeoutError) {
    bool ran = false;
    bool timed_out = false;
    bool cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        auto t = corio::create_task(value_now(1, &ran));  // not started yet
        try {
            co_await corio::wait_for(t, 0s);
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        cancelled = t.cancelled();
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(cancelled);
    EXPECT_FALSE(ran);  // cancelled before its first step: it never ran
}

TEST(WaitFor, NegativeTimeoutOnRunningTaskCancelsItAndRaisesTimeoutError) {
    bool saw_cancel = false;
    bool timed_out = false;
    bool cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        auto t = corio::create_task(sleep_then(10s, 0, &saw_cancel));
        co_await corio::sleep(0s);  // t is now inside its sleep
        try {
            co_await corio::wait_for(t, -5ms);
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        cancelled = t.cancelled();
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(cancelled);
}

TEST(WaitFor, ZeroTimeoutOnCoroutineNeverRunsIt) {
    bool ran = false;
    bool timed_out = false;
    run_virtual([&]() -> corio::Coro<> {
        try {
            co_await corio::wait_for(value_now(1, &ran), 0s);
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
    }());
    EXPECT_TRUE(timed_out);
    EXPECT_FALSE(ran);
}

TEST(WaitFor, ZeroTimeoutOnDoneTaskReturnsItsResult) {
    bool ran = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        auto t = corio::create_task(value_now(5, &ran));
        co_await t;
        co_return co_await corio::wait_for(t, 0s);
    }());
    EXPECT_EQ(r, 5);
}

TEST(WaitFor, ZeroTimeoutOnFailedTaskRaisesItsError) {
    bool caught = false;
    run_virtual([&]() -> corio::Coro<> {
        auto t = corio::create_task(fail_after(0s));
        try {
            co_await t;
        } catch (const std::logic_error&) {
        }
        try {
            co_await corio::wait_for(t, 0s);
        } catch (const std::logic_error&) {
            caught = true;
        }
    }());
    EXPECT_TRUE(caught);
}

// asyncio: with no time left the task is cancelled and awaited; if it swallows the cancellation
// and returns a value, wait_for returns that value.
TEST(WaitFor, ZeroTimeoutTaskSwallowingCancellationReturnsItsValue) {
    bool swallowed = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        auto t = corio::create_task(swallow_cancel(10s, 7, &swallowed));
        co_await corio::sleep(0s);
        co_return co_await corio::wait_for(t, 0s);
    }());
    EXPECT_EQ(r, 7);
    EXPECT_TRUE(swallowed);
}

TEST(WaitFor, OuterCancelPropagatesAndCancelsInnerTask) {
    bool inner_saw_cancel = false;
    bool worker_saw_timeout = false;
    bool worker_cancelled = false;
    bool inner_cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        auto inner = corio::create_task(sleep_then(10s, 0, &inner_saw_cancel));
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::wait_for(inner, 10s);
            } catch (const corio::TimeoutError&) {
                worker_saw_timeout = true;
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await corio::sleep(0s);
        worker.cancel();
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
        }
        worker_cancelled = worker.cancelled();
        inner_cancelled = inner.cancelled();
    }());
    EXPECT_TRUE(inner_saw_cancel);
    EXPECT_FALSE(worker_saw_timeout);
    EXPECT_TRUE(worker_cancelled);
    EXPECT_TRUE(inner_cancelled);
}

TEST(WaitFor, OuterCancelPropagatesAndCancelsInnerCoroutine) {
    bool inner_saw_cancel = false;
    bool worker_saw_timeout = false;
    bool worker_cancelled = false;
    run_virtual([&]() -> corio::Coro<> {
        auto worker_body = [&]() -> corio::Coro<> {
            try {
                co_await corio::wait_for(sleep_then(10s, 0, &inner_saw_cancel), 10s);
            } catch (const corio::TimeoutError&) {
                worker_saw_timeout = true;
                throw;
            }
        };
        auto worker = corio::create_task(worker_body());
        co_await corio::sleep(0s);
        worker.cancel();
        try {
            co_await worker;
        } catch (const corio::CancelledError&) {
        }
        worker_cancelled = worker.cancelled();
    }());
    EXPECT_TRUE(inner_saw_cancel);
    EXPECT_FALSE(worker_saw_timeout);
    EXPECT_TRUE(worker_cancelled);
}

// test_wait_for_cancellation_race_condition: the inner coroutine swallows the cancellation that
// the expiry caused and returns a value; as with timeout(), no TimeoutError, the value is
// returned.
TEST(WaitFor, InnerSwallowingCancellationAfterExpiryReturnsItsValue) {
    bool swallowed = false;
    int r = run_virtual([&]() -> corio::Coro<int> {
        co_return co_await corio::wait_for(swallow_cancel(10s, 1, &swallowed), 20ms);
    }());
    EXPECT_EQ(r, 1);
    EXPECT_TRUE(swallowed);
}

TEST(WaitFor, InnerTaskSwallowingCancellationAfterExpiryReturnsItsValue) {
    bool swallowed = false;
    bool task_cancelled = true;
    int r = run_virtual([&]() -> corio::Coro<int> {
        auto t = corio::create_task(swallow_cancel(10s, 2, &swallowed));
        int v = co_await corio::wait_for(t, 20ms);
        task_cancelled = t.cancelled();
        co_return v;
    }());
    EXPECT_EQ(r, 2);
    EXPECT_TRUE(swallowed);
    EXPECT_FALSE(task_cancelled);
}

TEST(WaitFor, AwaitableYieldingAReferenceReturnsAValue) {
    // A Future's co_await yields a reference; wait_for must still return the value.
    int v = run_virtual([]() -> corio::Coro<int> {
        auto f = corio::get_running_loop().create_future<int>();
        corio::get_running_loop().call_later(1ms, [f]() mutable { f.set_result(5); });
        co_return co_await corio::wait_for(f, 10s);
    }());
    EXPECT_EQ(v, 5);
}
