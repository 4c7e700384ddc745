// SPDX-License-Identifier: LGPL-2.1-or-later

#include "base/log.hpp"

#include <cstdarg>
#include <algorithm>
#include <cstdio>

namespace transient::base {

void log(int priority, std::string_view message) noexcept {
    // One fprintf() per message: stderr is unbuffered, and a line written in one piece is not
    // interleaved with another thread's.
    std::fprintf(stderr, "<%d>%.*s\n", priority, static_cast<int>(message.size()),
                 message.data());
}

void log_printf(int priority, const char* format, ...) noexcept {
    char buffer[4096];
    va_list ap;
    va_start(ap, format);
    const int n = std::vsnprintf(buffer, sizeof buffer, format, ap);
    va_end(ap);
    if (n < 0)
        return;
    log(priority, std::string_view(buffer, std::min<std::size_t>(n, sizeof buffer - 1)));
}

}  // namespace transient::base
