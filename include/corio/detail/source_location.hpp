// Where a coroutine was defined and where it is suspended, captured at compile time.
//
// libstdc++'s std::source_location needs __builtin_source_location, which clang 14 lacks, so
// corio captures the same facts with the builtins both compilers have.
#pragma once

#include <cstdint>

namespace corio {

struct SourceLocation {
    const char* file = "";
    const char* function = "";
    std::uint32_t line = 0;

    static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                            const char* function = __builtin_FUNCTION(),
                                            std::uint32_t line = __builtin_LINE()) noexcept {
        return SourceLocation{file, function, line};
    }
};

}  // namespace corio
