// Call graphs: the await chain of a task, walked from its innermost coroutine outwards, and the
// tasks on its waiter list.
#include "corio/graph.hpp"

#include <algorithm>
#include <coroutine>
#include <cstring>

#include "corio/coro.hpp"

namespace corio {
namespace detail {

std::vector<FrameCallGraphEntry> await_chain(const TaskCore& task, std::size_t limit) {
    std::vector<FrameCallGraphEntry> chain;
    if (task.done() || limit == 0) return chain;
    walk_await_chain(task, [&](const PromiseBase& p) {
        chain.push_back(frame_entry(p));
        return chain.size() < limit;
    });
    return chain;
}

SourceLocation innermost_location(const TaskCore& task) {
    std::vector<FrameCallGraphEntry> top = await_chain(task, 1);
    if (top.empty()) return task.coroutine();
    return {top.front().file, top.front().function, top.front().line};
}

bool is_corio_file(const char* file) noexcept {
    // This file is <root>/src/graph.cpp: the library's sources are under <root>/src/.
    static const std::string_view sources = [] {
        std::string_view self = __FILE__;
        return self.substr(0, self.size() - std::string_view("graph.cpp").size());
    }();
    const std::string_view f = file;
    return f.starts_with(sources) || f.find("/include/corio/") != std::string_view::npos ||
           f.starts_with("include/corio/");
}

SourceLocation user_location(const TaskCore& task) {
    SourceLocation found = task.coroutine();
    bool innermost = true;
    walk_await_chain(task, [&](const PromiseBase& p) {
        const FrameCallGraphEntry e = frame_entry(p);
        if (innermost || !is_corio_file(e.file)) found = {e.file, e.function, e.line};
        innermost = false;
        return is_corio_file(e.file);
    });
    return found;
}

std::string short_function_name(std::string_view name) {
    std::string out;
    int depth = 0;
    for (std::size_t i = 0; i < name.size(); ++i) {
        // "operator<", "operator<<", "operator<=>" are names, not template arguments.
        if (depth == 0 && name.substr(0, i).ends_with("operator")) {
            std::size_t end = i;
            while (end < name.size() && (name[end] == '<' || name[end] == '=' || name[end] == '>'))
                ++end;
            if (end > i) {
                out.append(name.substr(i, end - i));
                i = end - 1;
                continue;
            }
        }
        const char c = name[i];
        if (c == '<') {
            ++depth;
        } else if (c == '>' && depth > 0) {
            --depth;
        } else if (depth == 0) {
            out += c;
        }
    }
    return out;
}

std::string format_frame(const FrameCallGraphEntry& e) {
    return std::string("|   File '") + e.file + "', line " + std::to_string(e.line) +
           ", in async " + short_function_name(e.function) + "()";
}

const char* base_name(const char* path) noexcept {
    const char* slash = std::strrchr(path, '/');
    return slash != nullptr ? slash + 1 : path;
}

}  // namespace detail

namespace {

FutureCallGraph build(detail::TaskCore* core, std::size_t limit,
                      std::vector<const detail::TaskCore*>& path) {
    FutureCallGraph g;
    g.task = AnyTask(core);
    g.call_stack = detail::await_chain(*core, limit);
    path.push_back(core);
    std::vector<detail::TaskCore*> waiting;
    core->waiters.for_each([&](const detail::DoneWaiter& w) {
        if (w.task != nullptr && std::find(waiting.begin(), waiting.end(), w.task) == waiting.end())
            waiting.push_back(w.task);
    });
    // The list is newest first; the oldest waiter is the one that has waited longest.
    std::reverse(waiting.begin(), waiting.end());
    for (detail::TaskCore* t : waiting) {
        // Two tasks awaiting each other (a deadlock) would otherwise recurse forever.
        if (std::find(path.begin(), path.end(), t) != path.end()) continue;
        g.awaited_by.push_back(build(t, limit, path));
    }
    path.pop_back();
    return g;
}

void render(const FutureCallGraph& g, std::string& out, int level) {
    const std::string indent(static_cast<std::size_t>(level) * 4, ' ');
    auto line = [&](const std::string& text) {
        if (!out.empty()) out += '\n';
        out += indent;
        out += text;
    };
    char id[32];
    std::snprintf(id, sizeof id, "%#llx",
                  static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(g.task.core())));
    line("* Task(name='" + g.task.get_name() + "', id=" + id + ")");
    if (!g.call_stack.empty()) {
        line("  + Call stack:");
        for (const FrameCallGraphEntry& e : g.call_stack) line("  " + detail::format_frame(e));
    }
    if (!g.awaited_by.empty()) {
        line("  + Awaited by:");
        for (const FutureCallGraph& w : g.awaited_by) render(w, out, level + 1);
    }
}

}  // namespace

std::optional<FutureCallGraph> capture_call_graph(const AnyTask& task, std::size_t limit) {
    if (!task) return std::nullopt;
    std::vector<const detail::TaskCore*> path;
    return build(task.core(), limit, path);
}

std::optional<FutureCallGraph> capture_call_graph(std::size_t limit, SourceLocation here) {
    AnyTask self = current_task();
    if (!self) return std::nullopt;
    std::optional<FutureCallGraph> g = capture_call_graph(self, limit);
    // The running coroutine is past its latest co_await: say where it is now, when this call is
    // in it (a plain function called by the coroutine has a name of its own).
    if (!g->call_stack.empty()) {
        FrameCallGraphEntry& top = g->call_stack.front();
        if (std::string_view(top.function) == here.function &&
            std::string_view(top.file) == here.file)
            top.line = here.line;
    }
    return g;
}

std::string format_call_graph(const FutureCallGraph& graph) {
    std::string out;
    render(graph, out, 0);
    return out;
}

std::string format_call_graph(const AnyTask& task, std::size_t limit) {
    std::optional<FutureCallGraph> g = capture_call_graph(task, limit);
    return g ? format_call_graph(*g) : std::string();
}

void print_call_graph(const AnyTask& task, std::FILE* out, std::size_t limit) {
    std::fprintf(out, "%s\n", format_call_graph(task, limit).c_str());
}

void print_call_graph(std::FILE* out, std::size_t limit, SourceLocation here) {
    std::optional<FutureCallGraph> g = capture_call_graph(limit, here);
    if (g) std::fprintf(out, "%s\n", format_call_graph(*g).c_str());
}

}  // namespace corio
