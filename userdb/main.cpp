// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient-userdbd: serves the range table as the userdb provider io.transient.Ranges, so
// that userdbctl, nss-systemd and every other userdb client see the same records as
// libnss_transient. It only reads the table (never asks the allocator), so it keeps answering
// while the allocator is down, and needs no privilege beyond reading the table.

#include <syslog.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>

#include "base/daemon.hpp"
#include "base/log.hpp"
#include "shm/table_reader.hpp"
#include "userdb/records.hpp"
#include "userdb/service.hpp"
#include "varlink/varlink.hpp"

namespace {

using namespace transient;

constexpr char kHelp[] =
        "transient-userdbd [OPTIONS...]\n\n"
        "Serves transient UID/GID ranges as the userdb provider io.transient.Ranges.\n\n"
        "  -h --help       Show this help\n"
        "     --version    Show package version\n\n"
        "Environment:\n"
        "  TRANSIENT_RUNTIME_DIR  where the range table is (default "
        TRANSIENT_DEFAULT_RUNTIME_DIR ")\n"
        "  TRANSIENT_USERDB_DIR   where to bind the socket (default /run/systemd/userdb)\n";

class UserdbService final : public base::Service {
public:
    explicit UserdbService(sd_event* event)
        : table_(shm::table_path()),
          server_(event, {"transient", "transient-userdbd", PROJECT_VERSION,
                          "https://github.com/transient-uids/transient"}) {
        server_.add_interface(userdb::make_interface(table_));
    }

    std::string socket_path() const override {
        const char* env_dir = std::getenv("TRANSIENT_USERDB_DIR");
        const std::string dir = env_dir != nullptr && env_dir[0] != '\0' ? env_dir
                                                                         : "/run/systemd/userdb";
        return dir + "/" + userdb::kServiceName;
    }

    Result<void> listen(base::UniqueFd listener) override {
        if (auto r = server_.listen_fd(std::move(listener)); !r)
            return r;
        if (auto v = table_.view(); !v && v.error().value() != ENOENT)
            base::log_printf(LOG_WARNING, "Range table '%s' is not usable yet: %s",
                             table_.path().c_str(), v.error().message().c_str());
        base::log_printf(LOG_INFO, "Serving %s from '%s'.", socket_path().c_str(),
                         table_.path().c_str());
        return {};
    }

private:
    shm::TableReader table_;
    varlink::Server server_;
};

}  // namespace

int main(int argc, char** argv) {
    return base::run_daemon({.name = "transient-userdbd",
                             .version = PROJECT_VERSION,
                             .help = kHelp,
                             .options = {},
                             .socket_mode = 0666,
                             .status = "Serving io.systemd.UserDatabase",
                             .setup = [](sd_event* event) -> std::unique_ptr<base::Service> {
                                 return std::make_unique<UserdbService>(event);
                             }},
                            argc, argv);
}
