// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Owners of sd-event objects, systemd's _cleanup_(sd_event_unrefp) as std::unique_ptr.

#pragma once

#include <memory>

#include <systemd/sd-event.h>

namespace transient::base {

struct EventUnref {
    void operator()(sd_event* e) const noexcept { sd_event_unref(e); }
};
using EventPtr = std::unique_ptr<sd_event, EventUnref>;

struct SourceUnref {
    void operator()(sd_event_source* s) const noexcept { sd_event_source_disable_unref(s); }
};
// An sd-event source that is disabled and released with its owner. Disabling first matters:
// unref alone leaves the source firing if sd-event still holds a reference while dispatching.
using SourcePtr = std::unique_ptr<sd_event_source, SourceUnref>;

// Hands source `s` (a reference from sd_event_add_*()) to its event loop, which frees it when
// the loop goes, and returns it as a borrowed pointer, valid while the loop lives. Setting a
// source floating takes a reference of the source's own (systemd 252's sd-event): a caller that
// also kept the one sd_event_add_*() gave it left the source alive after the loop was freed.
inline sd_event_source* make_floating(sd_event_source* s) noexcept {
    if (s != nullptr && sd_event_source_set_floating(s, 1) > 0)
        sd_event_source_unref(s);
    return s;
}

}  // namespace transient::base
