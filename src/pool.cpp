// The frame and callback-node allocator.
//
// Small blocks (up to 1 KiB, in 16-byte classes) are carved from 64 KiB slabs and recycled
// through per-thread free lists: spawning a task or scheduling a callback costs a pointer pop,
// and a block carries no malloc header. A block may be freed on any thread; it then joins that
// thread's list. Slabs are owned by a process-wide registry and freed at exit, so memory that a
// burst of tasks took is kept for reuse rather than returned to the system (the trade-off every
// arena makes). Larger blocks go straight to malloc.
//
// Under AddressSanitizer every block comes from malloc, so a use after free is caught.
#include "corio/detail/pool.hpp"

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define CORIO_POOL_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORIO_POOL_DISABLED 1
#endif
#endif

namespace corio::detail {
namespace {

constexpr std::size_t kGranule = 16;
constexpr std::size_t kClasses = 64;  // blocks up to 1 KiB
constexpr std::size_t kSlabSize = 64 * 1024;

[[maybe_unused]] std::size_t size_class(std::size_t size) noexcept {
    return (size + kGranule - 1) / kGranule;
}

#ifndef CORIO_POOL_DISABLED

struct SlabRegistry {
    std::mutex mutex;
    std::vector<void*> slabs;

    ~SlabRegistry() {
        for (void* s : slabs) std::free(s);
    }
    void* new_slab() {
        void* s = std::malloc(kSlabSize);
        if (s == nullptr) throw std::bad_alloc();
        std::lock_guard lock(mutex);
        try {
            slabs.push_back(s);
        } catch (...) {
            std::free(s);
            throw;
        }
        return s;
    }
};

SlabRegistry& registry() {
    static SlabRegistry r;
    return r;
}

struct FreeBlock {
    FreeBlock* next;
};

struct Cache {
    FreeBlock* head[kClasses] = {};
    char* bump = nullptr;
    char* bump_end = nullptr;
    // Cleared when the thread's cache is torn down: a block freed by a later thread_local
    // destructor is then dropped (its slab is freed at exit anyway).
    bool alive = true;

    ~Cache() { alive = false; }

    void* carve(std::size_t bytes) {
        if (static_cast<std::size_t>(bump_end - bump) < bytes) {
            bump = static_cast<char*>(registry().new_slab());
            bump_end = bump + kSlabSize;
        }
        void* p = bump;
        bump += bytes;
        return p;
    }
};

thread_local Cache t_cache;

#endif

}  // namespace

void* pool_allocate(std::size_t size) {
#ifndef CORIO_POOL_DISABLED
    std::size_t c = size_class(size);
    if (c < kClasses) {
        if (FreeBlock* b = t_cache.head[c]) {
            t_cache.head[c] = b->next;
            return b;
        }
        return t_cache.carve(c == 0 ? kGranule : c * kGranule);
    }
#endif
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}

void pool_deallocate(void* p, [[maybe_unused]] std::size_t size) noexcept {
    if (p == nullptr) return;
#ifndef CORIO_POOL_DISABLED
    if (size_class(size) < kClasses) {
        if (t_cache.alive) {
            auto* b = static_cast<FreeBlock*>(p);
            std::size_t c = size_class(size);
            b->next = t_cache.head[c];
            t_cache.head[c] = b;
        }
        return;
    }
#endif
    std::free(p);
}

}  // namespace corio::detail
