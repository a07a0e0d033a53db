#include "corio/detail/pool.hpp"

#include <cstdlib>
#include <new>

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
constexpr std::size_t kClasses = 64;  // up to 1 KiB; larger blocks go straight to malloc
// Bounds what a burst of tasks leaves cached per size class (a few MiB at most).
constexpr std::size_t kMaxCachedPerClass = 1 << 14;

struct FreeBlock {
    FreeBlock* next;
};

struct Cache {
    FreeBlock* head[kClasses] = {};
    std::size_t count[kClasses] = {};
    // Cleared when the thread's cache is torn down, so that frees from later thread_local
    // destructors go straight to free() instead of into a dead cache.
    bool alive = true;

    ~Cache() {
        alive = false;
        for (std::size_t c = 0; c < kClasses; ++c) {
            while (FreeBlock* b = head[c]) {
                head[c] = b->next;
                std::free(b);
            }
        }
    }
};

thread_local Cache t_cache;

std::size_t size_class(std::size_t size) noexcept {
    return (size + kGranule - 1) / kGranule;
}

}  // namespace

void* pool_allocate(std::size_t size) {
#ifdef CORIO_POOL_DISABLED
    // Under AddressSanitizer every block goes back to malloc, so a use after free is caught.
    void* raw = std::malloc(size == 0 ? 1 : size);
    if (raw == nullptr) throw std::bad_alloc();
    return raw;
#endif
    std::size_t c = size_class(size);
    if (c < kClasses) {
        if (FreeBlock* b = t_cache.head[c]) {
            t_cache.head[c] = b->next;
            --t_cache.count[c];
            return b;
        }
        size = c * kGranule;
    }
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}

void pool_deallocate(void* p, std::size_t size) noexcept {
    if (p == nullptr) return;
#ifdef CORIO_POOL_DISABLED
    std::free(p);
    return;
#endif
    std::size_t c = size_class(size);
    if (c < kClasses && t_cache.alive && t_cache.count[c] < kMaxCachedPerClass) {
        auto* b = static_cast<FreeBlock*>(p);
        b->next = t_cache.head[c];
        t_cache.head[c] = b;
        ++t_cache.count[c];
        return;
    }
    std::free(p);
}

}  // namespace corio::detail
