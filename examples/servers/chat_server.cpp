// chat_server: every line a client sends goes to all the other clients.
//
//     chat_server [port] [host]        (defaults: 8889, 127.0.0.1; port 0 picks a free port)
//
// Each client has its own outgoing queue of at most 100 lines and a task that writes it out, so
// a client that stops reading never stalls the others: when its queue is full, it is
// disconnected. Serves until SIGINT or SIGTERM, then exits 0. Try it with two `nc`s.
#include <cstdio>
#include <list>
#include <memory>
#include <string>

#include "corio/corio.hpp"
#include "serve.hpp"

namespace {

struct Client {
    std::string name;
    corio::StreamWriter writer;
    corio::Queue<std::string> outbox{100};
};

std::list<std::shared_ptr<Client>> g_clients;

// Sends everything queued for one client; its drain() waits only for that client.
corio::Coro<> deliver(std::shared_ptr<Client> client) {
    try {
        for (;;) {
            std::string line = co_await client->outbox.get();
            client->writer.write(line);
            co_await client->writer.drain();
        }
    } catch (const corio::QueueShutDown&) {
    } catch (const corio::ConnectionError&) {
    }
}

void broadcast(const Client& from, const std::string& line) {
    for (auto& c : g_clients) {
        if (c.get() == &from) continue;
        try {
            c->outbox.put_nowait(from.name + ": " + line);
        } catch (const corio::QueueFull&) {
            c->writer.abort();  // too slow: drop it rather than let it hold everyone up
        } catch (const corio::QueueShutDown&) {
        }
    }
}

corio::Coro<> chat(corio::StreamReader reader, corio::StreamWriter writer) {
    auto me = std::make_shared<Client>();
    me->writer = writer;
    me->name = writer.get_extra_info("peername").value_or(corio::SocketAddress()).to_string();
    g_clients.push_back(me);
    auto sender = corio::create_task(deliver(me), "deliver to " + me->name);
    me->outbox.put_nowait("welcome, " + me->name + "\n");
    try {
        for (;;) {
            std::string line = co_await reader.readline();
            if (line.empty()) break;
            broadcast(*me, line);
        }
    } catch (const corio::OSError&) {
        // The client went away abruptly, or was dropped (aborted) for being too slow.
    }
    g_clients.remove(me);
    me->outbox.shutdown();  // the sender finishes what is queued, then stops
    co_await sender;
    writer.close();
    co_await writer.wait_closed();
}

}  // namespace

int main(int argc, char** argv) {
    return serve_main("chat_server", 8889, chat, argc, argv);
}
