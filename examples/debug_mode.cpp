// Debug mode's reports (docs/debugging.md): a coroutine never awaited, a step that blocks the
// loop, and a call graph. The reports go to stderr.
#include <chrono>
#include <string>
#include <thread>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

corio::Coro<std::string> read_reply(corio::Event& reply) {
    co_await reply.wait();
    co_return "ok";
}

corio::Coro<std::string> fetch(corio::Event& reply) {
    std::string r = co_await read_reply(reply);
    co_return r;
}

void parse_legacy_config() {
    std::this_thread::sleep_for(150ms);
}

corio::Coro<> startup() {
    co_await corio::sleep(1ms);
    parse_legacy_config();  // blocks the loop
    co_await corio::sleep(1ms);
}

corio::Coro<> main_task() {
    corio::Event reply;
    auto a = corio::create_task(fetch(reply), "fetch-a");
    auto b = corio::create_task(fetch(reply), "fetch-b");
    co_await corio::sleep(1ms);
    corio::print_call_graph(a);
    {
        auto forgotten = fetch(reply);  // created, never awaited
    }
    co_await corio::create_task(startup(), "startup");
    reply.set();
    co_await corio::gather(a, b);
}

int main() {
    corio::run(main_task(), {.debug = true});
}
