// A program for tools/check_corio_ps.sh: tasks in a known shape, then (with "stuck") a task
// that blocks the loop. Prints "ready <pid>" once the tasks are waiting, and the line numbers
// that the check expects corio-ps to show.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

namespace {

corio::Coro<int> read_reply(corio::Event& reply) {
    co_await reply.wait();  // LINE read_reply
    co_return 1;
}

corio::Coro<int> fetch(corio::Event& reply) {
    const int r = co_await read_reply(reply);  // LINE fetch
    co_return r;
}

void blocking_call() {
    std::this_thread::sleep_for(6s);  // what corio-ps must still see through
}

corio::Coro<> blocker() {
    co_await corio::sleep(200ms);
    blocking_call();
}

corio::Coro<> amain(bool stuck) {
    corio::Event reply;
    auto body = [&](corio::TaskGroup& tg) -> corio::Coro<> {
        tg.create_task(fetch(reply), "fetch-a");
        tg.create_task(fetch(reply), "fetch-b");
        if (stuck) tg.create_task(blocker(), "blocker");
        co_await corio::sleep(0s);
        std::printf("ready %d\n", static_cast<int>(::getpid()));
        std::fflush(stdout);
        co_await corio::sleep(8s);
        reply.set();
    };
    co_await corio::task_group(body);
}

}  // namespace

int main(int argc, char** argv) {
    const bool stuck = argc > 1 && std::strcmp(argv[1], "stuck") == 0;
    corio::run(amain(stuck), corio::RunOptions{.monitor = true});
    return 0;
}
