// An owning pointer to an intrusively reference-counted object (anything with add_ref() and
// release()): what Handle, Future<T> and Task<T> hold, so that copying one shares the object.
#pragma once

#include <utility>

namespace corio::detail {

template <class T>
class Ref {
  public:
    Ref() noexcept = default;
    // Shares `p`: takes a new reference.
    explicit Ref(T* p) noexcept : p_(p) {
        if (p_ != nullptr) p_->add_ref();
    }
    // Takes over a reference the caller already holds.
    static Ref adopt(T* p) noexcept {
        Ref r;
        r.p_ = p;
        return r;
    }
    Ref(const Ref& o) noexcept : Ref(o.p_) {}
    Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Ref& operator=(Ref o) noexcept {
        std::swap(p_, o.p_);
        return *this;
    }
    ~Ref() {
        if (p_ != nullptr) p_->release();
    }

    T* get() const noexcept { return p_; }
    T* operator->() const noexcept { return p_; }
    T& operator*() const noexcept { return *p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    bool operator==(const Ref& o) const noexcept { return p_ == o.p_; }

  private:
    T* p_ = nullptr;
};

}  // namespace corio::detail
