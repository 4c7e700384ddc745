// SPDX-License-Identifier: LGPL-2.1-or-later

#include "tests/shm/writer_freezer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <utility>

extern "C" void* __real_mmap(void* addr, std::size_t len, int prot, int flags, int fd, off_t off);

namespace transient::shm::testing {
namespace {

// Shared with the signal handler, hence lock-free atomics only.
std::atomic<std::size_t> g_arm_size{0};
std::atomic<long> g_arm_page{-1};
std::atomic<std::byte*> g_mapping{nullptr};
std::atomic<std::size_t> g_mapping_size{0};
std::atomic<std::byte*> g_protected{nullptr};  // the write-protected page, if any
std::atomic<std::size_t> g_fail_size{0};
std::atomic<int> g_fail_error{0};
int g_events[2] = {-1, -1};  // handler/thread -> test: 'F' frozen, 'D' done
int g_go[2] = {-1, -1};      // test -> handler: continue
struct sigaction g_previous;

std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

[[noreturn]] void die(const char* what) {
    std::perror(what);
    std::abort();
}

void protect_page(std::byte* page) {
    g_protected.store(page, std::memory_order_seq_cst);
    if (::mprotect(page, page_size(), PROT_READ) < 0)
        die("mprotect");
}

void on_segv(int sig, siginfo_t* info, void* context) {
    std::byte* page = g_protected.load(std::memory_order_seq_cst);
    auto* addr = static_cast<std::byte*>(info->si_addr);
    if (page == nullptr || addr < page || addr >= page + page_size()) {
        // Not our fault: let the previous handler (or the default action) deal with it.
        if (g_previous.sa_flags & SA_SIGINFO) {
            g_previous.sa_sigaction(sig, info, context);
            return;
        }
        ::sigaction(SIGSEGV, &g_previous, nullptr);
        return;  // the access faults again, now under the previous disposition
    }
    const char frozen = 'F';
    if (::write(g_events[1], &frozen, 1) != 1)
        std::abort();
    char go;
    if (::read(g_go[0], &go, 1) != 1)
        std::abort();
    ::mprotect(page, page_size(), PROT_READ | PROT_WRITE);
    g_protected.store(nullptr, std::memory_order_seq_cst);
}

char next_event() {
    pollfd p{g_events[0], POLLIN, 0};
    if (::poll(&p, 1, 20000) != 1) {
        std::fprintf(stderr, "WriterFreezer: the writer neither froze nor finished in 20 s\n");
        std::abort();
    }
    char c;
    if (::read(g_events[0], &c, 1) != 1)
        die("read");
    return c;
}

}  // namespace

void capture_next_mapping(std::size_t size) {
    g_mapping = nullptr;
    g_arm_page = -1;
    g_arm_size = size;
}

std::byte* captured_mapping() { return g_mapping.load(); }

void fail_next_mapping(std::size_t size, int error) {
    g_fail_error = error;
    g_fail_size = size;
}

WriterFreezer::WriterFreezer() {
    if (::pipe2(g_events, O_CLOEXEC) < 0 || ::pipe2(g_go, O_CLOEXEC) < 0)
        die("pipe2");
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSEGV, &sa, &g_previous) < 0)
        die("sigaction");
}

WriterFreezer::~WriterFreezer() {
    if (thread_.joinable()) {
        release();
    }
    ::sigaction(SIGSEGV, &g_previous, nullptr);
    for (int* fds : {g_events, g_go})
        for (int i = 0; i < 2; i++)
            ::close(std::exchange(fds[i], -1));
    g_arm_size = 0;
    g_mapping = nullptr;
    g_mapping_size = 0;
}

void WriterFreezer::arm_mapping(std::size_t size, std::optional<std::size_t> page) {
    g_mapping = nullptr;
    g_arm_page = page ? static_cast<long>(*page) : -1;
    g_arm_size = size;
}

bool WriterFreezer::captured() const { return g_mapping.load() != nullptr; }

std::size_t WriterFreezer::pages() const {
    return (g_mapping_size.load() + page_size() - 1) / page_size();
}

void WriterFreezer::protect(std::size_t page) {
    if (!captured() || page >= pages())
        std::abort();
    protect_page(g_mapping.load() + page * page_size());
}

bool WriterFreezer::run_until_frozen(std::function<void()> fn) {
    thread_ = std::thread([fn = std::move(fn)] {
        fn();
        const char done = 'D';
        if (::write(g_events[1], &done, 1) != 1)
            std::abort();
    });
    if (next_event() == 'F')
        return true;
    finish();
    return false;
}

void WriterFreezer::release() {
    const char go = 'G';
    if (::write(g_go[1], &go, 1) != 1)
        die("write");
    if (next_event() != 'D')
        std::abort();  // only one page is ever protected at a time
    finish();
}

void WriterFreezer::finish() {
    thread_.join();
    // The page was never touched: unprotect it.
    if (std::byte* page = g_protected.exchange(nullptr))
        ::mprotect(page, page_size(), PROT_READ | PROT_WRITE);
}

}  // namespace transient::shm::testing

// Captures the writer's mapping (see writer_freezer.hpp). Everything else passes through.
extern "C" void* __wrap_mmap(void* addr, std::size_t len, int prot, int flags, int fd, off_t off) {
    using namespace transient::shm::testing;
    if ((prot & PROT_WRITE) && (flags & MAP_SHARED)) {
        std::size_t want = len;
        if (g_fail_size.compare_exchange_strong(want, 0)) {
            errno = g_fail_error.load();
            return MAP_FAILED;
        }
    }
    void* p = __real_mmap(addr, len, prot, flags, fd, off);
    if (p == MAP_FAILED || !(prot & PROT_WRITE) || !(flags & MAP_SHARED))
        return p;
    std::size_t want = len;
    if (!g_arm_size.compare_exchange_strong(want, 0))
        return p;
    g_mapping_size = len;
    g_mapping = static_cast<std::byte*>(p);
    if (const long page = g_arm_page.load(); page >= 0)
        protect_page(static_cast<std::byte*>(p) + static_cast<std::size_t>(page) * page_size());
    return p;
}
