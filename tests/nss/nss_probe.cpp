// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient_nss_probe: a fresh process for the tests of what the module reads once per process
// (TRANSIENT_RUNTIME_DIR, TRANSIENT_NSS_BYPASS; nss_environment_test.cpp). It dlopen()s the
// built libnss_transient.so.2 and runs the operations on its command line in order, printing
// one line for each:
//   getpwuid ID | getpwnam NAME | getgrgid ID | getgrnam NAME   ->  "SUCCESS <name>" or
//                                                                  "<STATUS> <errno>"
//   getpwent                                                    ->  "SUCCESS <n1>,<n2>,..."
//   initgroups USER GID (GID is the primary group)              ->  "<STATUS> <count>"
//   glibc-getpwuid ID   getpwuid_r() through glibc with "passwd: transient" (needs
//                       LD_LIBRARY_PATH to reach the module)   ->  "SUCCESS <name>" or "NONE"
//   setenv NAME VALUE | unsetenv NAME                           ->  "OK"

#include <dlfcn.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#ifndef TRANSIENT_NSS_MODULE_PATH
#error "TRANSIENT_NSS_MODULE_PATH must name the built libnss_transient.so.2"
#endif

namespace {

const char* status_name(nss_status s) {
    switch (s) {
    case NSS_STATUS_SUCCESS:
        return "SUCCESS";
    case NSS_STATUS_NOTFOUND:
        return "NOTFOUND";
    case NSS_STATUS_TRYAGAIN:
        return "TRYAGAIN";
    case NSS_STATUS_UNAVAIL:
        return "UNAVAIL";
    default:
        return "OTHER";
    }
}

template <typename F>
F bind(void* h, const char* name) {
    auto f = reinterpret_cast<F>(::dlsym(h, name));
    if (f == nullptr) {
        std::fprintf(stderr, "dlsym(%s): %s\n", name, ::dlerror());
        std::exit(2);
    }
    return f;
}

}  // namespace

int main(int argc, char** argv) {
    void* h = ::dlopen(TRANSIENT_NSS_MODULE_PATH, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
        std::fprintf(stderr, "dlopen: %s\n", ::dlerror());
        return 2;
    }
    using ById = nss_status (*)(unsigned, void*, char*, size_t, int*);
    using ByName = nss_status (*)(const char*, void*, char*, size_t, int*);
    const auto getpwuid = bind<ById>(h, "_nss_transient_getpwuid_r");
    const auto getgrgid = bind<ById>(h, "_nss_transient_getgrgid_r");
    const auto getpwnam = bind<ByName>(h, "_nss_transient_getpwnam_r");
    const auto getgrnam = bind<ByName>(h, "_nss_transient_getgrnam_r");
    const auto setpwent = bind<nss_status (*)(int)>(h, "_nss_transient_setpwent");
    const auto getpwent = bind<nss_status (*)(passwd*, char*, size_t, int*)>(
            h, "_nss_transient_getpwent_r");
    const auto initgroups = bind<nss_status (*)(const char*, gid_t, long*, long*, gid_t**, long,
                                                int*)>(h, "_nss_transient_initgroups_dyn");

    alignas(char*) char buf[1024];
    for (int i = 1; i < argc; i++) {
        const std::string op = argv[i];
        auto arg = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs an argument\n", op.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        int err = 0;
        if (op == "getpwuid" || op == "getgrgid" || op == "getpwnam" || op == "getgrnam") {
            passwd pw{};
            group gr{};
            const bool user = op.rfind("getpw", 0) == 0;
            void* ret = user ? static_cast<void*>(&pw) : static_cast<void*>(&gr);
            const char* a = arg();
            nss_status s;
            if (op == "getpwuid" || op == "getgrgid")
                s = (user ? getpwuid : getgrgid)(static_cast<unsigned>(std::stoul(a)), ret, buf,
                                                  sizeof buf, &err);
            else
                s = (user ? getpwnam : getgrnam)(a, ret, buf, sizeof buf, &err);
            if (s == NSS_STATUS_SUCCESS)
                std::printf("SUCCESS %s\n", user ? pw.pw_name : gr.gr_name);
            else
                std::printf("%s %d\n", status_name(s), err);
        } else if (op == "getpwent") {
            std::string names;
            setpwent(0);
            passwd pw{};
            nss_status s;
            while ((s = getpwent(&pw, buf, sizeof buf, &err)) == NSS_STATUS_SUCCESS)
                names += (names.empty() ? "" : ",") + std::string(pw.pw_name);
            std::printf("%s %s\n", names.empty() ? status_name(s) : "SUCCESS", names.c_str());
        } else if (op == "initgroups") {
            const char* user = arg();
            const auto gid = static_cast<gid_t>(std::stoul(arg()));
            long start = 1, size = 4;
            auto* groups = static_cast<gid_t*>(std::calloc(4, sizeof(gid_t)));
            groups[0] = gid;
            const nss_status s = initgroups(user, gid, &start, &size, &groups, -1, &err);
            std::printf("%s %ld\n", status_name(s), start);
            std::free(groups);
        } else if (op == "glibc-getpwuid") {
            if (__nss_configure_lookup("passwd", "transient") != 0)
                return 2;
            passwd pw{}, *res = nullptr;
            ::getpwuid_r(static_cast<uid_t>(std::stoul(arg())), &pw, buf, sizeof buf, &res);
            std::printf(res != nullptr ? "SUCCESS %s\n" : "NONE\n", res ? pw.pw_name : "");
        } else if (op == "setenv") {
            const char* name = arg();
            ::setenv(name, arg(), 1);
            std::printf("OK\n");
        } else if (op == "unsetenv") {
            ::unsetenv(arg());
            std::printf("OK\n");
        } else {
            std::fprintf(stderr, "unknown operation %s\n", op.c_str());
            return 2;
        }
    }
    return 0;
}
