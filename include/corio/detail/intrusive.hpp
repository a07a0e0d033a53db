// Intrusive containers for the hot paths: linking an object costs no allocation.
#pragma once

#include <cassert>
#include <cstddef>

namespace corio::detail {

// A node of a circular doubly-linked list. Unlinking is O(1) and safe to call twice, which is
// what cancellation needs: a waiter removes itself without knowing whether it was woken.
struct ListHook {
    ListHook* prev = nullptr;
    ListHook* next = nullptr;

    bool linked() const noexcept { return next != nullptr; }
    void unlink() noexcept {
        if (next != nullptr) {
            prev->next = next;
            next->prev = prev;
            prev = next = nullptr;
        }
    }
};

// FIFO list of T, linked through its base `Hook` (a ListHook, or a class derived from one when
// T sits in several lists). The list does not own its elements.
template <class T, class Hook = ListHook>
class List {
  public:
    List() noexcept { head_.prev = head_.next = &head_; }
    List(const List&) = delete;
    List& operator=(const List&) = delete;
    ~List() { clear(); }

    bool empty() const noexcept { return head_.next == &head_; }
    void push_back(T& item) noexcept {
        ListHook& h = static_cast<Hook&>(item);
        assert(!h.linked());
        h.prev = head_.prev;
        h.next = &head_;
        head_.prev->next = &h;
        head_.prev = &h;
    }
    T& front() noexcept { return from_hook(head_.next); }
    T* pop_front() noexcept {
        if (empty()) return nullptr;
        T& item = front();
        static_cast<Hook&>(item).unlink();
        return &item;
    }
    // Unlinks every element without touching them otherwise.
    void clear() noexcept {
        while (!empty()) head_.next->unlink();
    }
    // Moves all elements of `other` to the end of this list.
    void splice(List& other) noexcept {
        while (T* item = other.pop_front()) push_back(*item);
    }
    std::size_t size() const noexcept {
        std::size_t n = 0;
        for (const ListHook* p = head_.next; p != &head_; p = p->next) ++n;
        return n;
    }

    template <class F>
    void for_each(F&& f) {
        for (ListHook* p = head_.next; p != &head_;) {
            ListHook* next = p->next;
            f(from_hook(p));
            p = next;
        }
    }

  private:
    static T& from_hook(ListHook* p) noexcept { return static_cast<T&>(static_cast<Hook&>(*p)); }

    ListHook head_;
};

}  // namespace corio::detail
