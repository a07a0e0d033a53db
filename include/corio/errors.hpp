// corio's exception types, named after asyncio's.
//
// Two roots, as in Python:
//   - corio::Error (a std::runtime_error) is `Exception`: what ordinary code catches.
//   - corio::BaseException is `BaseException`: CancelledError and Interrupted derive from it
//     and deliberately not from std::exception, so that `catch (const std::exception&)` or
//     `catch (const corio::Error&)` never swallows a cancellation. Catch them by name, or with
//     `catch (...)`, and rethrow unless you mean to stop the cancellation.
#pragma once

#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace corio {

class BaseException {
  public:
    explicit BaseException(std::string message = {}) : message_(std::move(message)) {}
    virtual ~BaseException() = default;
    virtual const char* what() const noexcept { return message_.c_str(); }
    const std::string& message() const noexcept { return message_; }

  private:
    std::string message_;
};

// Raised inside a task at the co_await where it was cancelled (asyncio.CancelledError).
class CancelledError : public BaseException {
  public:
    using BaseException::BaseException;
};

// What corio::run() throws after SIGINT cancelled the main task (KeyboardInterrupt).
class Interrupted : public BaseException {
  public:
    Interrupted() : BaseException("interrupted by SIGINT") {}
};

class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Misuse of the loop: nested loops, a closed loop, no running loop, ...
class RuntimeError : public Error {
  public:
    using Error::Error;
};

// An argument with the right type but a wrong value (Python's ValueError): a negative
// Semaphore value, a BoundedSemaphore released too often, task_done() called too often, ...
class ValueError : public Error {
  public:
    using Error::Error;
};

// An operation not allowed in the object's current state (e.g. result() of a pending task).
class InvalidStateError : public Error {
  public:
    using Error::Error;
};

// A failed system call (Python's OSError): `code()` is the errno value, and the message reads
// "[Errno 111] Connection refused" followed by what was being done.
class OSError : public Error {
  public:
    OSError(int code, const std::string& what);
    int code() const noexcept { return code_; }

  protected:
    OSError(int code, std::string message, bool /*preformatted*/)
        : Error(std::move(message)), code_(code) {}

  private:
    int code_;
};

// A deadline passed (wait_for, timeout, timeout_at), or ETIMEDOUT. As in Python 3.11+, it is an
// OSError (code ETIMEDOUT).
class TimeoutError : public OSError {
  public:
    TimeoutError();
    explicit TimeoutError(const std::string& message);
};

// The errors of a connection, by errno (Python's ConnectionError family).
class ConnectionError : public OSError {
  public:
    using OSError::OSError;
};
class BrokenPipeError : public ConnectionError {  // EPIPE, ESHUTDOWN
  public:
    using ConnectionError::ConnectionError;
};
class ConnectionAbortedError : public ConnectionError {  // ECONNABORTED
  public:
    using ConnectionError::ConnectionError;
};
class ConnectionRefusedError : public ConnectionError {  // ECONNREFUSED
  public:
    using ConnectionError::ConnectionError;
};
class ConnectionResetError : public ConnectionError {  // ECONNRESET
  public:
    using ConnectionError::ConnectionError;
};

// The errors of files and processes that a caller can act on (Python's names).
class FileNotFoundError : public OSError {  // ENOENT
  public:
    using OSError::OSError;
};
class PermissionError : public OSError {  // EACCES, EPERM
  public:
    using OSError::OSError;
};
class ProcessLookupError : public OSError {  // ESRCH
  public:
    using OSError::OSError;
};

// Throws the OSError subclass Python would raise for `code` (ConnectionRefusedError for
// ECONNREFUSED, TimeoutError for ETIMEDOUT, ...), with `what` saying what failed.
[[noreturn]] void throw_os_error(int code, const std::string& what);

// Several failures at once, as raised by TaskGroup.
class ExceptionGroup : public Error {
  public:
    ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions);
    const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }

  private:
    std::vector<std::exception_ptr> exceptions_;
};

// The stream ended before `expected` bytes arrived; `partial` holds what did.
class IncompleteReadError : public Error {
  public:
    IncompleteReadError(std::string partial, std::size_t expected);
    const std::string& partial() const noexcept { return partial_; }
    std::size_t expected() const noexcept { return expected_; }

  private:
    std::string partial_;
    std::size_t expected_;
};

// A separator was not found within the stream's limit; `consumed` bytes are to be skipped.
class LimitOverrunError : public Error {
  public:
    LimitOverrunError(std::string message, std::size_t consumed)
        : Error(std::move(message)), consumed_(consumed) {}
    std::size_t consumed() const noexcept { return consumed_; }

  private:
    std::size_t consumed_;
};

// A Barrier was reset or aborted while a task waited on it, or waited on after abort().
class BrokenBarrierError : public RuntimeError {
  public:
    using RuntimeError::RuntimeError;
};

class QueueEmpty : public Error {
  public:
    QueueEmpty() : Error("queue is empty") {}
};

class QueueFull : public Error {
  public:
    QueueFull() : Error("queue is full") {}
};

class QueueShutDown : public Error {
  public:
    QueueShutDown() : Error("queue is shut down") {}
};

// "TypeName: message" for any exception, for reports and logs.
std::string describe(const std::exception_ptr& e);

// True when `e` holds an exception of type E (or derived from it).
template <class E>
bool holds(const std::exception_ptr& e) noexcept {
    if (!e) return false;
    try {
        std::rethrow_exception(e);
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
}

// True when `e` holds a CancelledError.
inline bool is_cancellation(const std::exception_ptr& e) noexcept {
    return holds<CancelledError>(e);
}

}  // namespace corio
