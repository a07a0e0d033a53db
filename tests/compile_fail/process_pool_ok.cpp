// Positive control for the process_pool_* cases: jobs and values a ProcessPoolExecutor accepts.
#include <corio/corio.hpp>
#include <corio/process_pool.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

struct Sample {
    int id;
    double value;
};

int square(int x) {
    return x * x;
}

std::vector<std::byte> compress(const std::vector<std::byte>& data) {
    return data;
}

std::tuple<std::optional<std::string>, std::array<Sample, 2>> describe(
    std::pair<int, std::vector<std::string>> p) {
    return {std::to_string(p.first), {}};
}

void log_line(std::string_view) {}

struct Doubler {
    int operator()(int x) const { return 2 * x; }
};

corio::Coro<> use(corio::ProcessPoolExecutor& pool) {
    int a = co_await corio::run_in_executor(pool, square, 3);
    std::vector<std::byte> data(16);
    std::vector<std::byte> packed = co_await corio::run_in_executor(pool, compress, data);
    std::pair<int, std::vector<std::string>> p{1, {"x"}};
    auto d = co_await corio::run_in_executor(pool, describe, p);
    co_await corio::run_in_executor(pool, log_line, "text given as a char pointer");
    auto twice = [](Sample s) { return s.value * 2; };
    double t = co_await corio::run_in_executor(pool, twice, Sample{1, 2.0});
    int b = co_await corio::run_in_executor(pool, Doubler{}, a);
    (void)packed;
    (void)d;
    (void)t;
    (void)b;
}

int main() {}
