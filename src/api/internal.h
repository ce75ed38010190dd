// What the C API's source files share: the handles behind include/bitnet.h's opaque types and
// the per-thread error message.
#pragma once

#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "model/model.h"
#include "sampling/sampler.h"

struct bitnet_model {
    std::unique_ptr<bitnet::Model> m;
};
struct bitnet_context {
    std::unique_ptr<bitnet::Context> c;
};
struct bitnet_sampler {
    bitnet::Sampler s;
};

namespace bitnet::api {

// This thread's bitnet_last_error() text.
std::string& last_error();

// Runs f, turning an exception into on_error and its message into last_error().
template <typename F, typename R>
R guarded(R on_error, F&& f) {
    try {
        last_error().clear();
        return f();
    } catch (const std::bad_alloc&) {
        last_error() = "out of memory";
    } catch (const std::exception& e) {
        last_error() = e.what();
    }
    return on_error;
}

}  // namespace bitnet::api
