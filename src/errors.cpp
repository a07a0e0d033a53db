#include "corio/errors.hpp"

#include <cxxabi.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <typeinfo>

namespace corio {
namespace {

std::string type_name(const std::type_info& t) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(
        abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
    return status == 0 && name ? std::string(name.get()) : std::string(t.name());
}

std::string group_message(const std::string& message, std::size_t n) {
    return message + " (" + std::to_string(n) + " sub-exception" + (n == 1 ? "" : "s") + ")";
}

}  // namespace

ExceptionGroup::ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions)
    : Error(group_message(message, exceptions.size())), exceptions_(std::move(exceptions)) {}

IncompleteReadError::IncompleteReadError(std::string partial, std::size_t expected)
    : Error(std::to_string(partial.size()) + " bytes read on a total of " +
            std::to_string(expected) + " expected bytes"),
      partial_(std::move(partial)),
      expected_(expected) {}

namespace {

std::string os_message(int code, const std::string& what) {
    std::string m = "[Errno " + std::to_string(code) + "] " + std::strerror(code);
    if (!what.empty()) m += ": " + what;
    return m;
}

}  // namespace

OSError::OSError(int code, const std::string& what) : Error(os_message(code, what)), code_(code) {}

TimeoutError::TimeoutError() : OSError(ETIMEDOUT, "timed out", true) {}
TimeoutError::TimeoutError(const std::string& message) : OSError(ETIMEDOUT, message, true) {}

void throw_os_error(int code, const std::string& what) {
    switch (code) {
        case EPIPE:
        case ESHUTDOWN:
            throw BrokenPipeError(code, what);
        case ECONNABORTED:
            throw ConnectionAbortedError(code, what);
        case ECONNREFUSED:
            throw ConnectionRefusedError(code, what);
        case ECONNRESET:
            throw ConnectionResetError(code, what);
        case ETIMEDOUT:
            throw TimeoutError(os_message(code, what));
        case ENOENT:
            throw FileNotFoundError(code, what);
        case EACCES:
        case EPERM:
            throw PermissionError(code, what);
        case ESRCH:
            throw ProcessLookupError(code, what);
        default:
            throw OSError(code, what);
    }
}

std::string describe(const std::exception_ptr& e) {
    if (!e) return "no exception";
    try {
        std::rethrow_exception(e);
    } catch (const ExceptionGroup& g) {
        std::string s = type_name(typeid(g)) + ": " + g.what();
        for (const auto& sub : g.exceptions()) s += "\n  - " + describe(sub);
        return s;
    } catch (const std::exception& x) {
        return type_name(typeid(x)) + ": " + x.what();
    } catch (const BaseException& x) {
        return type_name(typeid(x)) + ": " + x.what();
    } catch (...) {
        return "unknown exception";
    }
}

}  // namespace corio
