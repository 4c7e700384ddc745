// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/allocator.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <string>

#include "allocator/policy.hpp"
#include "allocator/subids.hpp"
#include "shm/reader.hpp"

namespace transient::allocator {
namespace {

std::uint64_t now_usec() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000U +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000U;
}

std::unexpected<Failure> fail(ErrorKind kind, std::string message) {
    return std::unexpected(Failure{kind, std::move(message)});
}

// A history file longer than this is damaged: the pools hold fewer than 70000 keys.
constexpr std::size_t kMaxHistoryLines = 1 << 17;

// The keys a range's release records: its 64K block starts, or its single ID.
template <typename Fn>
void for_each_key(const RangeEntry& r, Fn&& fn) {
    if (r.size == 1 || (r.flags & shm::kEntryFlagImported) != 0) {
        if (r.size == 1)
            fn(r.start);
        return;
    }
    for (std::uint64_t b = r.start; b < r.end(); b += shm::kContainerRangeSize)
        fn(static_cast<std::uint32_t>(b));
}

}  // namespace

std::string release_history_path(const std::string& table_path) {
    const auto slash = table_path.rfind('/');
    return (slash == std::string::npos ? std::string() : table_path.substr(0, slash + 1)) +
           "ranges.released";
}

ReleaseHistory::ReleaseHistory(std::string path) : path_(std::move(path)) { load(); }

void ReleaseHistory::load() {
    if (path_.empty())
        return;
    std::ifstream in(path_);
    std::string line;
    for (std::size_t n = 0; n < kMaxHistoryLines && std::getline(in, line); n++) {
        std::uint32_t id = 0;
        auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), id);
        if (ec != std::errc{} || end != line.data() + line.size())
            continue;
        ranks_[id] = next_++;  // a later line wins: it was released later
    }
    lines_ = ranks_.size();
    free_all();
    // Compacted at once: the file may hold superseded or unreadable lines.
    if (next_ - 1 > ranks_.size())
        save();
}

void ReleaseHistory::save() {
    if (path_.empty())
        return;
    std::vector<std::pair<std::uint64_t, std::uint32_t>> order;
    order.reserve(ranks_.size());
    for (const auto& [id, rank] : ranks_)
        order.emplace_back(rank, id);
    std::sort(order.begin(), order.end());
    std::string text;
    for (const auto& [rank, id] : order)
        text += std::to_string(id) + "\n";
    // Readers of the old file see it whole until the rename; a crash leaves one or the other.
    const std::string tmp = path_ + ".new";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << text;
        if (!out.flush()) {
            std::fprintf(stderr, "<4>Failed to write %s: the reuse order is kept in memory.\n",
                         tmp.c_str());
            return;
        }
    }
    if (::rename(tmp.c_str(), path_.c_str()) < 0) {
        std::fprintf(stderr, "<4>Failed to rename %s: the reuse order is kept in memory.\n",
                     tmp.c_str());
        return;
    }
    lines_ = ranks_.size();
}

void ReleaseHistory::record(std::span<const RangeEntry> released) {
    if (released.empty())
        return;
    std::string text;
    for (const RangeEntry& r : released)
        for_each_key(r, [&](std::uint32_t id) {
            auto& rank = ranks_[id];
            if (rank != 0)
                free_of(id).erase({rank, id});
            rank = next_++;
            free_of(id).emplace(rank, id);
            text += std::to_string(id) + "\n";
            lines_++;
        });
    if (path_.empty())
        return;
    if (lines_ > 2 * ranks_.size() + 1024)
        return save();
    // One write of whole lines: a crash in the middle leaves at most a last line cut short,
    // which load() skips.
    shm::UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
    if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        std::fprintf(stderr, "<4>Failed to append to %s: the reuse order is kept in memory.\n",
                     path_.c_str());
}

std::optional<std::uint64_t> ReleaseHistory::rank(std::uint32_t id) const {
    auto it = ranks_.find(id);
    if (it == ranks_.end())
        return std::nullopt;
    return it->second;
}

void ReleaseHistory::free_all() {
    free_.clear();
    free_ids_.clear();
    for (const auto& [id, rank] : ranks_)
        free_of(id).emplace(rank, id);
}

void ReleaseHistory::take(std::uint32_t id) {
    if (auto it = ranks_.find(id); it != ranks_.end())
        free_of(id).erase({it->second, id});
}

ReleaseHistory::FreeBlocks& ReleaseHistory::free_of(std::uint32_t id) {
    return id % shm::kContainerRangeSize == 0 ? free_ : free_ids_;
}

bool is_valid_range_name(std::string_view name) {
    return shm::is_valid_range_name(name.data(), name.size());
}

Allocator::Allocator(shm::TableWriter writer, std::unique_ptr<CollisionChecker> checker,
                     Policy policy, std::unique_ptr<UsernsProbe> probe)
    : writer_(std::move(writer)),
      checker_(std::move(checker)),
      policy_(policy),
      probe_(std::move(probe)),
      history_(release_history_path(writer_.path())) {
    reset_ranges(writer_.recovery().ranges);
}

const std::vector<RangeEntry>& Allocator::ranges() const {
    if (listed_stale_) {
        listed_.clear();
        listed_.reserve(ranges_.size());
        for (const auto& [start, r] : ranges_)
            listed_.push_back(r);
        listed_stale_ = false;
    }
    return listed_;
}

void Allocator::add_range(const RangeEntry& r) {
    ranges_.insert_or_assign(r.start, r);
    if ((r.flags & shm::kEntryFlagImported) == 0)
        owned_[r.owner]++;
    if (is_bound(r))
        bound_of_[r.owner].insert(r.start);
    // Imported ranges (any alignment) are seen when pick_released_block() meets their blocks.
    for_each_key(r, [&](std::uint32_t id) { history_.take(id); });
    listed_stale_ = true;
}

void Allocator::drop_range(Index::const_iterator it) {
    if ((it->second.flags & shm::kEntryFlagImported) == 0)
        if (auto o = owned_.find(it->second.owner); o != owned_.end() && --o->second == 0)
            owned_.erase(o);
    if (is_bound(it->second))
        if (auto b = bound_of_.find(it->second.owner);
            b != bound_of_.end() && b->second.erase(it->second.start) > 0 && b->second.empty())
            bound_of_.erase(b);
    ranges_.erase(it);
    listed_stale_ = true;
}

void Allocator::reset_ranges(const std::vector<RangeEntry>& sorted) {
    ranges_.clear();
    owned_.clear();
    bound_of_.clear();
    // Blocks an imported range that is gone now held count as free again.
    history_.free_all();
    for (const RangeEntry& r : sorted)
        add_range(r);
    listed_stale_ = true;
}

std::size_t Allocator::owned_by(uid_t owner) const {
    const auto it = owned_.find(owner);
    return it == owned_.end() ? 0 : it->second;
}

Allocator::Index::const_iterator Allocator::named_range(std::string_view name) const {
    // The writer's name index gives the start; ranges_ is the published table, by start.
    const auto start = writer_.find_name(name);
    return start ? ranges_.find(*start) : ranges_.end();
}

Allocator::Index::const_iterator Allocator::first_ending_above(std::uint64_t id) const {
    // Ranges do not overlap, so their ends rise with their starts: the one before the first
    // starting above `id` is the only other candidate.
    auto it = id >= UINT32_MAX ? ranges_.end()
                               : ranges_.upper_bound(static_cast<std::uint32_t>(id));
    if (it != ranges_.begin() && std::prev(it)->second.end() > id)
        return std::prev(it);
    return it;
}

bool Allocator::candidate_free(std::uint32_t start, std::uint32_t size) {
    return !checker_->range_taken(start, size).has_value();
}

void Allocator::skip_used_blocks() {
    // Moves never_used_ past the blocks that are ours or were released before. It only moves
    // up: a block taken stays ours or becomes released, never unused again; publish() of a
    // whole table (imports may have left) starts it over.
    constexpr std::uint64_t kBlock = shm::kContainerRangeSize;
    std::uint64_t b = std::max<std::uint64_t>(
            never_used_, shm::round_up(policy_.pools.container_first, kBlock));
    auto it = first_ending_above(b);
    while (b + kBlock - 1 <= policy_.pools.container_last) {
        while (it != ranges_.end() && it->second.end() <= b)
            ++it;
        if (it != ranges_.end() && it->second.start < b + kBlock)
            b = shm::round_up(it->second.end(), kBlock);
        else if (history_.rank(static_cast<std::uint32_t>(b)))
            b += kBlock;
        else
            break;
    }
    never_used_ = b;
}

std::optional<std::uint32_t> Allocator::pick_container_base(std::uint32_t size) {
    // First fit over the gaps between our own ranges (sorted by start), asking the other
    // sources of truth only about candidates we do not already hold. Candidates with a block
    // released before wait (ReleaseHistory): they are tried only when no never-used one is
    // free, the one whose newest release is oldest first. Never-used candidates all start at
    // or above never_used_ (every block below it is ours or was released), so the first pass
    // starts there rather than walking every range of the table for every allocation.
    skip_used_blocks();
    const std::uint64_t pool_first =
            shm::round_up(policy_.pools.container_first, shm::kContainerRangeSize);
    const std::uint64_t last = policy_.pools.container_last;  // inclusive
    std::vector<std::pair<std::uint64_t, std::uint32_t>> reused;  // (newest release, base)
    // Single blocks, by far the common size, come from the history's free blocks when no
    // never-used one is left; larger sizes need runs of free blocks, found by the walk.
    const bool one_block = size == shm::kContainerRangeSize;
    for (const bool never_used : {true, false}) {
        if (!never_used && one_block)
            return pick_released_block();
        const std::uint64_t first = never_used ? never_used_ : pool_first;
        auto it = first_ending_above(first);
        for (std::uint64_t base = first; base + size - 1 <= last;
             base += shm::kContainerRangeSize) {
            while (it != ranges_.end() && it->second.end() <= base)
                ++it;
            if (it != ranges_.end() && it->second.start < base + size) {
                // Occupied by one of ours: skip to the first aligned base past it.
                base = shm::round_up(it->second.end(), shm::kContainerRangeSize) -
                       shm::kContainerRangeSize;
                continue;
            }
            std::uint64_t newest = 0;
            for (std::uint64_t b = base; b < base + size; b += shm::kContainerRangeSize)
                newest = std::max(newest,
                                  history_.rank(static_cast<std::uint32_t>(b)).value_or(0));
            if (never_used && newest != 0)
                continue;
            if (!never_used) {
                // Never-used candidates were all tried in the first pass.
                if (newest != 0)
                    reused.emplace_back(newest, static_cast<std::uint32_t>(base));
                continue;
            }
            if (candidate_free(static_cast<std::uint32_t>(base), size))
                return static_cast<std::uint32_t>(base);
        }
    }
    std::sort(reused.begin(), reused.end());
    for (const auto& [rank, base] : reused)
        if (candidate_free(base, size))
            return base;
    return std::nullopt;
}

std::optional<std::uint32_t> Allocator::pick_released_block() {
    // The least recently released free block that no other source claims. An entry a range
    // holds (an imported one: allocated ones took theirs in add_range()) or outside the pool
    // (the history of an earlier configuration) is dropped as met, so each costs once.
    constexpr std::uint64_t kBlock = shm::kContainerRangeSize;
    const std::uint64_t pool_first = shm::round_up(policy_.pools.container_first, kBlock);
    const std::uint64_t last = policy_.pools.container_last;  // inclusive
    const auto& free = history_.free_blocks();
    for (auto next = free.begin(); next != free.end();) {
        const std::uint32_t base = (next++)->second;
        const auto held = first_ending_above(base);
        if (base < pool_first || base + kBlock - 1 > last ||
            (held != ranges_.end() && held->second.start < base + kBlock)) {
            history_.take(base);
            continue;
        }
        if (candidate_free(base, static_cast<std::uint32_t>(kBlock)))
            return base;
    }
    return std::nullopt;
}

std::optional<std::uint32_t> Allocator::pick_dynamic_id() {
    // As pick_container_base(): never-used IDs first, from a cursor that moves past the IDs
    // that are ours or were released (never back: publish() of a whole table starts it over),
    // then the least recently released free ones, from the history's free IDs in release order.
    // Walking the pool from its first ID and sorting every released one met on the way cost
    // each allocation O(IDs used so far), the whole pool once it had been used
    // (AllocatorTest.PicksASingleIdAsFastWithAUsedPoolAsWithANewOne).
    const std::uint64_t first = policy_.pools.dynamic_first, last = policy_.pools.dynamic_last;
    std::uint64_t id = std::max(never_used_id_, first);
    bool cursor = true;  // every ID before `id` is ours or was released
    for (auto it = first_ending_above(id); id <= last; id++) {
        while (it != ranges_.end() && it->second.end() <= id)
            ++it;
        const auto candidate = static_cast<std::uint32_t>(id);
        if ((it != ranges_.end() && it->second.start <= id) || history_.rank(candidate)) {
            if (cursor)
                never_used_id_ = id + 1;
            continue;
        }
        cursor = false;  // another source's ID, or one it may take later: asked every time
        if (shm::is_valid_range_shape(candidate, 1) && candidate_free(candidate, 1))
            return candidate;
    }
    // An ID a range holds (an imported one) or outside the pool (an earlier configuration) is
    // dropped from the free ones as met, so each costs once.
    const auto& free = history_.free_ids();
    for (auto next = free.begin(); next != free.end();) {
        const std::uint32_t candidate = (next++)->second;
        const auto held = first_ending_above(candidate);
        if (candidate < first || candidate > last ||
            (held != ranges_.end() && held->second.start <= candidate)) {
            history_.take(candidate);
            continue;
        }
        if (shm::is_valid_range_shape(candidate, 1) && candidate_free(candidate, 1))
            return candidate;
    }
    return std::nullopt;
}

std::optional<std::uint32_t> Allocator::pick(std::uint32_t size) {
    return size == 1 ? pick_dynamic_id() : pick_container_base(size);
}

Outcome<void> Allocator::publish(std::vector<RangeEntry> next) {
    if (auto r = writer_.publish(next); !r)
        return fail(ErrorKind::kInternal,
                    "Failed to publish the range table: " + r.error().message());
    // Whatever left the table (released, or its namespace gone) goes to the reuse order.
    std::vector<RangeEntry> gone;
    auto kept = next.begin();
    for (const auto& [start, r] : ranges_) {
        while (kept != next.end() && kept->start < r.start)
            ++kept;
        if (kept == next.end() || kept->start != r.start || kept->name != r.name)
            gone.push_back(r);
    }
    reset_ranges(next);
    history_.record(gone);
    never_used_ = never_used_id_ = 0;
    return {};
}

Outcome<void> Allocator::check_request(const std::string& name, const AllocateRequest& req) {
    if (!is_valid_range_name(name))
        return fail(ErrorKind::kInvalidName,
                    "'" + name + "' is not a valid range name: [A-Za-z_][A-Za-z0-9_-]*, at most " +
                            std::to_string(shm::kMaxRangeNameLength) + " bytes" +
                            (req.caller != 0 ? " including the prefix u<UID>-" : ""));
    if (is_imported_name(name))
        return fail(ErrorKind::kInvalidName, "Range names starting with " +
                                                     std::string(kImportedPrefix) +
                                                     " are reserved for /etc/subuid entries");
    if (!may_use_name(name, req.caller))
        return fail(ErrorKind::kPermissionDenied,
                    "Range names starting with u" + std::to_string(*name_scope(name)) +
                            "- belong to UID " + std::to_string(*name_scope(name)));
    if (req.owner && req.caller != 0 && *req.owner != req.caller)
        return fail(ErrorKind::kPermissionDenied,
                    "Only root may allocate a range for another user (UID " +
                            std::to_string(*req.owner) + ")");
    const std::int64_t block = shm::kContainerRangeSize;
    if (req.size != 1 &&
        (req.size < block || req.size % block != 0 || req.size > policy_.max_range_size))
        return fail(ErrorKind::kInvalidSize,
                    "Invalid range size " + std::to_string(req.size) +
                            ": must be 1 or a multiple of 65536 up to MaxRangeSize=" +
                            std::to_string(policy_.max_range_size));
    // Multi-block ranges (kubelet wants 110 blocks) take a large share of a shared pool.
    if (req.size > block && req.caller != 0)
        return fail(ErrorKind::kPermissionDenied,
                    "Only root may allocate more than 65536 IDs at once");
    if (const std::size_t most = shm::max_range_name_length(static_cast<std::uint32_t>(req.size));
        name.size() > most)
        return fail(ErrorKind::kInvalidName,
                    "'" + name + "' is too long for a range of " + std::to_string(req.size) +
                            " IDs: its last user vu-" + name + "-" +
                            std::to_string(req.size - 1) + " would exceed 31 bytes; the name " +
                            "may have at most " + std::to_string(most) + " bytes");
    if ((req.size == 1 && !policy_.allow_single) || (req.size != 1 && !policy_.allow_container))
        return fail(ErrorKind::kInvalidSize, "Ranges of size " + std::to_string(req.size) +
                                                     " are not allowed by the configuration");
    if (req.userns && req.caller != 0 && req.userns->owner != req.caller)
        return fail(ErrorKind::kPermissionDenied,
                    "The user namespace belongs to UID " + std::to_string(req.userns->owner));
    if (named_range(name) != ranges_.end())
        return fail(ErrorKind::kNameInUse, "Range '" + name + "' already exists");
    if (auto why = checker_->name_taken(name))
        return fail(ErrorKind::kNameInUse, "Range name '" + name + "' is taken: " + *why);
    return {};
}

Outcome<void> Allocator::check_quota(uid_t caller) {
    if (caller == 0 || owned_by(caller) < policy_.max_ranges_per_user)
        return {};
    // Ranges whose namespaces died since the last sweep do not count against anyone.
    if (auto r = reap_if_due(caller); !r)
        return std::unexpected(r.error());
    if (owned_by(caller) < policy_.max_ranges_per_user)
        return {};
    return fail(ErrorKind::kQuotaExceeded,
                "UID " + std::to_string(caller) + " already owns " +
                        std::to_string(owned_by(caller)) + " ranges, the most allowed (" +
                        std::to_string(policy_.max_ranges_per_user) + ")");
}

Outcome<std::uint32_t> Allocator::choose(std::uint32_t size) {
    // When the table or the pool is full, ranges of dead namespaces the periodic sweep has not
    // released yet are reclaimed first: one dead namespace must not starve an allocation
    // (systemd PR #42534).
    if (ranges_.size() >= writer_.capacity())
        if (auto r = reap_if_due(); !r)
            return std::unexpected(r.error());
    if (ranges_.size() >= writer_.capacity())
        return fail(ErrorKind::kPoolExhausted, "The range table is full");
    auto start = pick(size);
    if (!start) {
        auto reaped = reap_if_due();
        if (!reaped)
            return std::unexpected(reaped.error());
        if (!reaped->empty())
            start = pick(size);
    }
    if (!start)
        return fail(ErrorKind::kPoolExhausted,
                    "No free range of size " + std::to_string(size) + " is left in the pool");
    return *start;
}

namespace {

// Ends the collision checker's choice (drops the other allocators' locks) on every way out of
// allocate(), which on success is after the publish.
class ChoiceScope {
public:
    explicit ChoiceScope(CollisionChecker& c) : c_(c) {}
    ~ChoiceScope() { c_.end_choice(); }
    ChoiceScope(const ChoiceScope&) = delete;
    ChoiceScope& operator=(const ChoiceScope&) = delete;

private:
    CollisionChecker& c_;
};

}  // namespace

Outcome<RangeEntry> Allocator::allocate(const AllocateRequest& req) {
    const std::string name = scoped_name(req.name, req.caller);
    if (auto r = check_request(name, req); !r)
        return std::unexpected(r.error());
    const auto owner = static_cast<uid_t>(req.owner.value_or(req.caller));
    // Root is never refused for the quota, not even for another owner (whose own requests then
    // count these ranges too).
    if (auto r = check_quota(req.caller == 0 ? 0 : owner); !r)
        return std::unexpected(r.error());
    if (auto why = checker_->begin_choice())
        return std::unexpected(*why);
    ChoiceScope scope(*checker_);
    const auto size = static_cast<std::uint32_t>(req.size);
    auto start = choose(size);
    if (!start)
        return std::unexpected(start.error());

    RangeEntry entry{name, *start, size, static_cast<std::uint32_t>(owner), 0, now_usec(), 0, 0};
    if (req.userns)
        bind_entry(entry, *req.userns);
    // Published as a change of one entry: a copy of the whole table per allocation made the
    // rate fall with the table's size (issue 11).
    if (auto r = writer_.insert(entry); !r)
        return fail(ErrorKind::kInternal,
                    "Failed to publish the range table: " + r.error().message());
    add_range(entry);
    return entry;
}

Outcome<RangeEntry> Allocator::release(std::string_view given, uid_t caller) {
    std::string name = scoped_name(given, caller);
    auto named = [&](const std::string& n) { return named_range(n); };
    auto it = named(name);
    // A range root allocated for the caller has root's name as given ("kubelet", owner 1000):
    // its owner may release it by that name.
    if (it == ranges_.end() && name != given) {
        auto theirs = named(std::string(given));
        if (theirs != ranges_.end() && theirs->second.owner == caller) {
            it = theirs;
            name = std::string(given);
        }
    }
    if (it == ranges_.end())
        return fail(ErrorKind::kNoSuchRange, "No range named '" + name + "'");
    if ((it->second.flags & shm::kEntryFlagImported) != 0)
        return fail(ErrorKind::kImportedRange, "Range '" + name +
                                                       "' comes from /etc/subuid or /etc/subgid; "
                                                       "edit those files to remove it");
    if (caller != 0 && caller != it->second.owner)
        return fail(ErrorKind::kPermissionDenied,
                    "Range '" + name + "' belongs to UID " + std::to_string(it->second.owner));
    const RangeEntry released = it->second;
    if (auto r = writer_.erase(released.start); !r)
        return fail(ErrorKind::kInternal,
                    "Failed to publish the range table: " + r.error().message());
    drop_range(it);
    history_.record({&released, 1});
    return released;
}

Outcome<void> Allocator::set_imported(const std::vector<RangeEntry>& imported,
                                      std::vector<std::string>* skipped) {
    std::vector<RangeEntry> next;
    std::vector<RangeEntry> before;  // the imported ranges now, to keep their creation times
    for (const auto& [start, r] : ranges_)
        ((r.flags & shm::kEntryFlagImported) != 0 ? before : next).push_back(r);
    const std::vector<RangeEntry> live = next;
    for (RangeEntry e : imported) {
        auto after = std::upper_bound(live.begin(), live.end(), e.start,
                                      [](std::uint32_t v, const RangeEntry& r) {
                                          return v < r.start;
                                      });
        const RangeEntry* clash = nullptr;
        if (after != live.end() && after->start < e.end())
            clash = &*after;
        else if (after != live.begin() && std::prev(after)->end() > e.start)
            clash = &*std::prev(after);
        for (const RangeEntry& r : live)
            if (clash == nullptr && r.name == e.name)
                clash = &r;
        if (clash != nullptr) {
            skipped->push_back("Range " + e.name + " (" + std::to_string(e.start) + "+" +
                               std::to_string(e.size) + ") overlaps or has the name of live range " +
                               clash->name + ", skipped");
            continue;
        }
        auto same = std::find_if(before.begin(), before.end(), [&](const RangeEntry& b) {
            return b.name == e.name && b.start == e.start && b.size == e.size &&
                   b.owner == e.owner && b.flags == e.flags;
        });
        e.created_usec = same != before.end() ? same->created_usec : now_usec();
        next.push_back(std::move(e));
    }
    std::sort(next.begin(), next.end(),
              [](const RangeEntry& a, const RangeEntry& b) { return a.start < b.start; });
    if (next == ranges())
        return {};
    return publish(std::move(next));
}

Outcome<RangeEntry> Allocator::find(const std::optional<std::string>& given,
                                    const std::optional<std::int64_t>& id, uid_t caller) const {
    const RangeEntry* by_name = nullptr;
    const RangeEntry* by_id = nullptr;
    std::optional<std::string> name =
            given ? std::optional(scoped_name(*given, caller)) : std::nullopt;
    if (name) {
        auto named = [&](const std::string& n) { return named_range(n); };
        // Everyone may look at every range: a name is the caller's own first ("web" from UID
        // 1000 is u1000-web), then, if the caller has none of that name, the name as given
        // (root's "web"), so that what `list` shows can also be shown.
        auto it = named(*name);
        if (it == ranges_.end() && *name != *given) {
            it = named(*given);
            if (it != ranges_.end())
                name = *given;
        }
        if (it == ranges_.end())
            return fail(ErrorKind::kNoSuchRange, "No range named '" + *name + "'");
        by_name = &it->second;
    }
    if (id) {
        const auto it =
                *id < 0 ? ranges_.end() : first_ending_above(static_cast<std::uint64_t>(*id));
        if (it == ranges_.end() || *id < static_cast<std::int64_t>(it->second.start))
            return fail(ErrorKind::kNoSuchRange, "No range contains UID " + std::to_string(*id));
        by_id = &it->second;
    }
    if (by_name && by_id && by_name != by_id)
        return fail(ErrorKind::kNoSuchRange,
                    "Range '" + *name + "' does not contain UID " + std::to_string(*id));
    if (!by_name && !by_id)
        return fail(ErrorKind::kNoSuchRange, "Neither a name nor a UID was given");
    return by_name ? *by_name : *by_id;
}

}  // namespace transient::allocator
