// SPDX-License-Identifier: LGPL-2.1-or-later
//
// From a request's bytes to its answers: parsing, the method table look-up, checking the
// parameters against the declared signature, running the handler with every way it can fail
// turned into an error reply, and the built-in org.varlink.service interface.

#include <syslog.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <optional>
#include <utility>

#include "varlink/server_impl.hpp"

namespace transient::varlink {
namespace {

constexpr char kServiceInterface[] = "org.varlink.service";

// The interface description every Varlink service carries, as published on varlink.org.
constexpr char kServiceDescription[] =
    R"(# The Varlink Service Interface is provided by every varlink service. It
# describes the service and the interfaces it implements.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)

# Client is denied access
error PermissionDenied ()

# Method is expected to be called with 'more' set to true, but wasn't
error ExpectedMore ()
)";

bool has_type(const json& value, Type type) {
    switch (type) {
    case Type::kString:
        return value.is_string();
    case Type::kInt:
        return value.is_number_integer();  // not floats; booleans are not numbers in nlohmann
    case Type::kBool:
        return value.is_boolean();
    case Type::kObject:
        return value.is_object();
    case Type::kArray:
        return value.is_array();
    case Type::kAny:
        return true;
    }
    return false;
}

// The name of the first parameter that does not fit the signature, if any: unknown keys and
// ill-typed values in key order, then missing required ones in declaration order.
std::optional<std::string> find_invalid_parameter(const std::vector<Param>& signature,
                                                  const json& given) {
    for (const auto& [key, value] : given.items()) {
        auto param = std::find_if(signature.begin(), signature.end(),
                                  [&key](const Param& p) { return p.name == key; });
        if (param == signature.end())
            return key;
        if (value.is_null() ? !param->optional : !has_type(value, param->type))
            return key;
    }
    for (const Param& param : signature)
        if (!param.optional && !given.contains(param.name))
            return param.name;
    return std::nullopt;
}

// Reads an optional boolean flag of the call ("more", "oneway"). Absent and null are false;
// anything else that is not a boolean makes the message malformed.
bool read_flag(const json& message, const char* key, bool& ret) {
    auto it = message.find(key);
    if (it == message.end() || it->is_null()) {
        ret = false;
        return true;
    }
    if (!it->is_boolean())
        return false;
    ret = it->get<bool>();
    return true;
}

class CallImpl final : public Call {
public:
    CallImpl(detail::Connection& connection, std::string method, bool more, bool oneway,
             std::vector<base::UniqueFd> fds)
        : connection_(&connection), peer_(connection.peer()), method_(std::move(method)),
          more_(more), oneway_(oneway), fds_(std::move(fds)) {}

    // A deferred call that was dropped without its final answer still owes the client one.
    ~CallImpl() override {
        if (slot_ && !answered_)
            fail(ECANCELED);
    }

    const std::string& method() const override { return method_; }
    const json& parameters() const override { return parameters_; }
    bool more() const override { return more_; }
    bool oneway() const override { return oneway_; }
    const ucred& peer() const override { return peer_; }
    std::size_t fd_count() const override { return fds_.size(); }
    base::UniqueFd take_fd(std::size_t index) override {
        return index < fds_.size() ? std::move(fds_[index]) : base::UniqueFd();
    }

    std::unique_ptr<Call> defer() override {
        auto deferred = std::unique_ptr<CallImpl>(new CallImpl(*this));
        if (answered_ || slot_ || connection_ == nullptr) {
            deferred->answered_ = true;  // too late: its answers go nowhere
            deferred->slot_ = std::make_shared<detail::DeferredSlot>();
            return deferred;
        }
        deferred->slot_ = connection_->begin_deferred();
        deferred->connection_ = nullptr;
        answered_ = true;  // this one is spent; the handler answers through `deferred`
        return deferred;
    }

    void reply(json parameters) override { answer(std::move(parameters), /*continues=*/false); }

    void reply_continues(json parameters) override {
        // Without "more" the client waits for exactly one reply: a "continues" it did not ask
        // for would leave it out of step with every later answer, so this becomes the final
        // reply instead (a handler bug, but not one the client has to pay for).
        answer(std::move(parameters), /*continues=*/more_);
    }

    void reply_serialized(std::string_view parameters, bool continues) override {
        if (answered_)
            return;
        continues = continues && more_;  // as in reply_continues()
        if (!continues)
            answered_ = true;
        // What dump() makes of {"continues": true, "parameters": …}: keys in order.
        std::string text;
        text.reserve(parameters.size() + 36);
        text += continues ? R"({"continues":true,"parameters":)" : R"({"parameters":)";
        text += parameters;
        text += '}';
        emit_text(std::move(text));
    }

    void error(std::string_view name, json parameters) override {
        if (answered_)
            return;
        answered_ = true;
        if (!parameters.is_object())
            parameters = json::object();
        emit(json{{"error", name}, {"parameters", std::move(parameters)}});
    }

    bool answered() const { return answered_; }
    void set_parameters(json parameters) { parameters_ = std::move(parameters); }
    void set_internal_error(const std::string& name) { internal_error_ = name; }

    // A failure of the server's or the handler's making: the interface's declared internal
    // error, or io.systemd.System with `errno_value` if it declares none.
    void fail(int errno_value) {
        error(internal_error_name(), internal_error_parameters(errno_value));
    }

private:
    // The deferred copy: everything but the answers, which only the copy gives from now on.
    CallImpl(CallImpl& other)
        : connection_(other.connection_), peer_(other.peer_), method_(other.method_),
          parameters_(std::move(other.parameters_)), internal_error_(other.internal_error_),
          more_(other.more_), oneway_(other.oneway_), fds_(std::move(other.fds_)) {}

    std::string_view internal_error_name() const {
        return internal_error_.empty() ? std::string_view(kErrorSystem) : internal_error_;
    }
    json internal_error_parameters(int errno_value) const {
        return internal_error_.empty() ? json{{"errno", errno_value}} : json::object();
    }

    // Where answers go: the connection for a call being handled, the slot's for a deferred
    // one (nullptr once the connection is gone).
    detail::Connection* connection() const {
        return slot_ ? slot_->connection : connection_;
    }

    void answer(json parameters, bool continues) {
        if (answered_)
            return;  // the call is over: anything more would be read as the next call's answer
        if (!parameters.is_object()) {
            fail(EINVAL);
            return;
        }
        json message{{"parameters", std::move(parameters)}};
        if (continues)
            message["continues"] = true;
        else
            answered_ = true;
        emit(message);
    }

    void emit(const json& message) {
        if (connection() == nullptr)
            return;  // a deferred call whose client is gone
        emit_text(oneway_ ? std::string() : detail::dump(message));
    }

    // `text`: one serialized message (ignored for oneway calls).
    void emit_text(std::string text) {
        detail::Connection* connection = this->connection();
        if (connection == nullptr)
            return;  // a deferred call whose client is gone
        if (!oneway_) {
            if (text.size() > connection->server().limits_.max_message_size) {
                // The client would drop the connection over it; tell it what happened instead.
                answered_ = true;
                text = detail::dump(json{{"error", internal_error_name()},
                                         {"parameters", internal_error_parameters(EMSGSIZE)}});
            }
            connection->queue(text);
        }
        if (slot_) {
            // Answered from outside the connection's own callback: it has to flush by itself,
            // and after the final answer go on with the requests that waited.
            if (answered_)
                connection->end_deferred();
            else
                connection->wake();
        }
    }

    detail::Connection* connection_;  // nullptr in a deferred call
    std::shared_ptr<detail::DeferredSlot> slot_;  // set in a deferred call
    ucred peer_;
    std::string method_;
    json parameters_ = json::object();
    std::string internal_error_;  // empty until the interface is known, or if it has none
    bool more_;
    bool oneway_;
    std::vector<base::UniqueFd> fds_;
    bool answered_ = false;
};

void run_handler(const Server::Impl& server, const Handler& handler, CallImpl& call) {
    try {
        handler(call);
    } catch (const std::bad_alloc&) {
        server.log(LOG_ERR, "Out of memory in Varlink method " + call.method());
        call.fail(ENOMEM);
    } catch (const std::exception& e) {
        server.log(LOG_ERR, "Varlink method " + call.method() + " failed: " + e.what());
        call.fail(EIO);
    } catch (...) {
        server.log(LOG_ERR, "Varlink method " + call.method() + " failed");
        call.fail(EIO);
    }
    // A client waits for an answer to every call that is not oneway: never leave it hanging.
    if (!call.answered())
        call.error(kErrorMethodNotImplemented, json{{"method", call.method()}});
}

}  // namespace

void Server::Impl::add_interface(Interface iface) {
    std::string name = iface.name;
    interfaces_.insert_or_assign(std::move(name), std::move(iface));
}

void Server::Impl::add_service_interface() {
    Interface service{kServiceInterface, kServiceDescription, {}};
    service.methods.push_back(Method{"GetInfo", {}, [this](Call& call) {
        json interfaces = json::array();
        for (const auto& [name, iface] : interfaces_)
            interfaces.push_back(name);
        call.reply(json{{"vendor", info_.vendor},
                        {"product", info_.product},
                        {"version", info_.version},
                        {"url", info_.url},
                        {"interfaces", std::move(interfaces)}});
    }});
    service.methods.push_back(Method{
        "GetInterfaceDescription", {{"interface", Type::kString}}, [this](Call& call) {
            const auto& name = call.parameters()["interface"].get_ref<const std::string&>();
            auto it = interfaces_.find(name);
            if (it == interfaces_.end())
                call.error(kErrorInterfaceNotFound, json{{"interface", name}});
            else
                call.reply(json{{"description", it->second.description}});
        }});
    add_interface(std::move(service));
}

const Method* Server::Impl::find_method(Call& call, const Interface** ret_iface) const {
    const std::string& method = call.method();
    const std::size_t dot = method.rfind('.');
    if (dot == std::string::npos || dot == 0) {
        call.error(kErrorMethodNotFound, json{{"method", method}});
        return nullptr;
    }
    const std::string_view interface_name(method.data(), dot);
    const std::string_view method_name(method.data() + dot + 1, method.size() - dot - 1);
    auto iface = interfaces_.find(interface_name);
    if (iface == interfaces_.end()) {
        call.error(kErrorInterfaceNotFound, json{{"interface", interface_name}});
        return nullptr;
    }
    const auto& methods = iface->second.methods;
    auto entry = std::find_if(methods.begin(), methods.end(),
                              [&](const Method& m) { return m.name == method_name; });
    if (entry == methods.end()) {
        call.error(kErrorMethodNotFound, json{{"method", method}});
        return nullptr;
    }
    *ret_iface = &iface->second;
    return &*entry;
}

bool Server::Impl::dispatch(detail::Connection& connection, std::string_view text,
                            std::vector<base::UniqueFd> fds) {
    json message = detail::parse(text);
    if (message.is_discarded() || !message.is_object()) {
        log(LOG_DEBUG, "Varlink message is not a JSON object, disconnecting");
        return false;
    }
    auto method_it = message.find("method");
    bool more = false;
    bool oneway = false;
    if (method_it == message.end() || !method_it->is_string() ||
        !read_flag(message, "more", more) || !read_flag(message, "oneway", oneway) ||
        (more && oneway)) {
        log(LOG_DEBUG, "Varlink message is not a valid call, disconnecting");
        return false;
    }

    CallImpl call(connection, method_it->get<std::string>(), more, oneway, std::move(fds));
    const std::string& method = call.method();

    json parameters = json::object();
    if (auto it = message.find("parameters"); it != message.end() && !it->is_null()) {
        if (!it->is_object()) {
            call.invalid_parameter("parameters");
            return true;
        }
        parameters = std::move(*it);
    }

    const Interface* iface = nullptr;
    const Method* entry = find_method(call, &iface);
    if (entry == nullptr)
        return true;
    call.set_internal_error(iface->internal_error);
    if (auto bad = find_invalid_parameter(entry->params, parameters)) {
        call.invalid_parameter(*bad);
        return true;
    }
    if (!entry->handler) {
        call.error(kErrorMethodNotImplemented, json{{"method", method}});
        return true;
    }

    call.set_parameters(std::move(parameters));
    // A copy, because a handler may (re)register interfaces, which replaces this entry.
    const Handler handler = entry->handler;
    run_handler(*this, handler, call);
    return true;
}

}  // namespace transient::varlink
