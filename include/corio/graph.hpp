// What a task is doing: its await chain and the tasks that wait for it (asyncio.graph, Python
// 3.14).
//
//     corio::print_call_graph(task);
//
//     * Task(name='fetch-a', id=0x5581c3a4e2d0)
//       + Call stack:
//       |   File 'app.cpp', line 12, in async read_reply()
//       |   File 'app.cpp', line 20, in async fetch()
//       + Awaited by:
//         * Task(name='Task-1', id=0x5581c3a4d010)
//           + Call stack:
//           |   File 'app.cpp', line 31, in async main()
//
// The call stack lists the coroutines the task is suspended in, innermost first, each with the
// line of the co_await it waits at. The "awaited by" part lists the tasks waiting for this one:
// by co_await, gather/wait/as_completed, or as the parent of the TaskGroup it belongs to, each
// with its own chain. Everything is captured at compile time (the coroutine's name, file and
// line of each co_await); no debugger or debug information is involved.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "corio/detail/source_location.hpp"
#include "corio/tasks.hpp"

namespace corio {

// One coroutine of an await chain (Python's FrameCallGraphEntry).
struct FrameCallGraphEntry {
    const char* function = "";  // the coroutine's name, as __builtin_FUNCTION gives it
    const char* file = "";
    std::uint32_t line = 0;      // of the co_await it is suspended at; of its definition if none
    std::uint32_t def_line = 0;  // where the coroutine is defined
};

// A task, its await chain and, recursively, the tasks waiting for it (Python's
// FutureCallGraph).
struct FutureCallGraph {
    AnyTask task;
    std::vector<FrameCallGraphEntry> call_stack;  // innermost first; empty once it is done
    std::vector<FutureCallGraph> awaited_by;
};

inline constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();

// The call graph of `task`, with at most `limit` entries in each call stack (the innermost
// ones). Empty for an empty handle. Loop thread only.
std::optional<FutureCallGraph> capture_call_graph(const AnyTask& task,
                                                  std::size_t limit = kNoLimit);
// The call graph of the running task, its innermost entry at the line of this call; empty
// outside a task.
std::optional<FutureCallGraph> capture_call_graph(std::size_t limit = kNoLimit,
                                                  SourceLocation here = SourceLocation::current());

// The graph as text, in the layout of Python's asyncio.format_call_graph (no trailing newline).
std::string format_call_graph(const FutureCallGraph& graph);
std::string format_call_graph(const AnyTask& task, std::size_t limit = kNoLimit);

// Writes format_call_graph(task) and a newline to `out` (stdout by default).
void print_call_graph(const AnyTask& task, std::FILE* out = stdout, std::size_t limit = kNoLimit);
// The running task's graph, as capture_call_graph() sees it.
void print_call_graph(std::FILE* out = stdout, std::size_t limit = kNoLimit,
                      SourceLocation here = SourceLocation::current());

namespace detail {
// Calls visit(promise) for each coroutine of the await chain of `task` (not done), innermost
// first, until visit returns false. Reads only: the watchdog and the monitor call it in a signal
// handler on the loop's thread.
template <class Visit>
void walk_await_chain(const TaskCore& task, Visit&& visit) {
    // resume_point is the innermost coroutine: the one the task resumes at, or, while the task
    // runs, the one running. Each nested Coro's resume_point is the coroutine awaiting it, up to
    // the root, whose promise is the task itself.
    std::coroutine_handle<> h = task.resume_point;
    for (;;) {
        const PromiseBase* p =
            h ? &std::coroutine_handle<PromiseBase>::from_address(h.address()).promise()
              : &static_cast<const PromiseBase&>(task);
        if (!visit(*p) || p->is_root()) return;
        h = p->continuation();
    }
}
// The entry of one coroutine in a call stack.
inline FrameCallGraphEntry frame_entry(const PromiseBase& p) noexcept {
    return {p.def_function, p.def_file, p.suspended_line != 0 ? p.suspended_line : p.def_line,
            p.def_line};
}

// The await chain of `task`, innermost first (what capture_call_graph and the loop's reports
// use).
std::vector<FrameCallGraphEntry> await_chain(const TaskCore& task, std::size_t limit = kNoLimit);
// The innermost coroutine of `task` and the line it is suspended at (or runs after).
SourceLocation innermost_location(const TaskCore& task);
// The innermost coroutine of `task` that is not corio's own (src/, include/corio/) and its line:
// where in the user's code something the library did on its behalf comes from. The innermost
// location when every frame is corio's.
SourceLocation user_location(const TaskCore& task);
// Whether `file` (a __FILE__) is one of corio's own sources or headers.
bool is_corio_file(const char* file) noexcept;
// A function name without its template arguments ("task_group<...lambda...>" -> "task_group"):
// what call stacks show, since g++ spells out every argument.
std::string short_function_name(std::string_view name);
// "|   File 'app.cpp', line 12, in async fetch()": one line of a call stack, without indent.
std::string format_frame(const FrameCallGraphEntry& entry);
// The last component of a path.
const char* base_name(const char* path) noexcept;
}  // namespace detail

}  // namespace corio
