// echo_client: sends lines to an echo server and prints what comes back.
//
//     echo_client PORT [HOST] [LINE...]     (HOST defaults to 127.0.0.1; LINE to "hello")
//
// Prints each reply, one per line, and exits 0 if every line came back unchanged, 1 otherwise
// (2 if the server cannot be reached).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "corio/corio.hpp"

namespace {

corio::Coro<int> talk(std::string host, std::uint16_t port, std::vector<std::string> lines) {
    auto [reader, writer] = co_await corio::open_connection(host, port);
    int wrong = 0;
    for (const std::string& line : lines) {
        writer.write(line + "\n");
        co_await writer.drain();
        std::string reply = co_await reader.readline();
        std::printf("%s", reply.c_str());
        if (reply != line + "\n") ++wrong;
    }
    writer.close();
    co_await writer.wait_closed();
    co_return wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: echo_client PORT [HOST] [LINE...]\n");
        return 2;
    }
    const auto port = static_cast<std::uint16_t>(std::atoi(argv[1]));
    const std::string host = argc > 2 ? argv[2] : "127.0.0.1";
    std::vector<std::string> lines(argv + std::min(argc, 3), argv + argc);
    if (lines.empty()) lines.emplace_back("hello");
    try {
        return corio::run(talk(host, port, lines));
    } catch (const corio::OSError& e) {
        std::fprintf(stderr, "echo_client: %s\n", e.what());
        return 2;
    }
}
