// echo_server: sends back every line it receives, to any number of clients at once.
//
//     echo_server [port] [host]        (defaults: 8888, 127.0.0.1; port 0 picks a free port)
//
// Serves until SIGINT or SIGTERM, then stops accepting, lets the connections finish what they
// were sending, and exits 0. Try it with `nc 127.0.0.1 8888`.
#include <cstdio>
#include <string>

#include "corio/corio.hpp"
#include "serve.hpp"

namespace {

corio::Coro<> echo(corio::StreamReader reader, corio::StreamWriter writer) {
    try {
        for (;;) {
            std::string line = co_await reader.readline();
            if (line.empty()) break;  // the client closed its side
            writer.write(line);
            co_await writer.drain();  // a client that does not read slows only itself
        }
    } catch (const corio::ConnectionError&) {
        // The client went away abruptly: nothing more to do for it.
    }
    writer.close();
    co_await writer.wait_closed();
}

}  // namespace

int main(int argc, char** argv) {
    return serve_main("echo_server", 8888, echo, argc, argv);
}
