// Per-thread cache of small blocks for coroutine frames and callback nodes.
//
// Blocks come from malloc and are cached by size class on the thread that frees them, so a
// block may be freed on any thread. Spawning a task reaches malloc only when the cache of its
// size class is empty.
#pragma once

#include <cstddef>

namespace corio::detail {

void* pool_allocate(std::size_t size);
void pool_deallocate(void* p, std::size_t size) noexcept;

// Base for objects that should come from the pool.
struct Pooled {
    static void* operator new(std::size_t size) { return pool_allocate(size); }
    static void operator delete(void* p, std::size_t size) noexcept { pool_deallocate(p, size); }
};

}  // namespace corio::detail
