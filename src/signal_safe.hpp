// Numbers as text without allocating: for what runs in a signal handler (crash reports, the
// monitor's snapshot of a stuck loop) and the text those build.
#pragma once

#include <cstdint>
#include <string_view>

namespace corio::detail {

// Room for any 64-bit number, in decimal or as "0x" and hex digits.
using NumberBuffer = char[24];

// `v` in decimal, written at the end of `buf`.
inline std::string_view decimal(std::uint64_t v, NumberBuffer& buf) noexcept {
    std::size_t i = sizeof buf;
    do {
        buf[--i] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return {buf + i, sizeof buf - i};
}

// `v` as "0x" and lower-case hex digits, written at the end of `buf`.
inline std::string_view hexadecimal(std::uint64_t v, NumberBuffer& buf) noexcept {
    std::size_t i = sizeof buf;
    do {
        buf[--i] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v != 0);
    buf[--i] = 'x';
    buf[--i] = '0';
    return {buf + i, sizeof buf - i};
}

}  // namespace corio::detail
