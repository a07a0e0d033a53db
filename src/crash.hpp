// Crash reports with the await chain (src/crash.cpp).
#pragma once

namespace corio::detail {

// Whether corio::run/Runner install it: the option if given, else unless CORIO_CRASH_HANDLER=0.
bool crash_handler_wanted(const bool* option) noexcept;
// Installs the handlers (once per process) and an alternate signal stack for the calling thread
// (once per thread). Idempotent.
void install_crash_handler() noexcept;

}  // namespace corio::detail
