#include "store/open_store.h"

#include "registry.h"
#include "server/client.h"
#include "store/file_store.h"
#include "store/postgres_store.h"
#include "store/server_store.h"

namespace xtm::store {
namespace {

Status OpenServerStore(const tm::TmConfig& cfg, std::unique_ptr<DecisionStore>* out) {
  server::ClientOptions co;
  Status s = server::ParseAddressList(cfg.server, &co.servers);
  if (!s.ok()) return Status::InvalidArgument(cfg.source + ": [tm] server: " + s.message());
  co.address = co.servers.front();
  bool tcp = false;
  for (const server::Address& a : co.servers) tcp = tcp || !a.unix_socket;
  if (tcp) {
    if (cfg.srv.token_file.empty()) {
      return Status::InvalidArgument(cfg.source + ": [server] token_file is required to reach xatmd over TCP");
    }
    s = server::ReadTokenFile(cfg.srv.token_file, &co.token);
    if (!s.ok()) return Status::InvalidArgument(cfg.source + ": [server] token_file: " + s.message());
  }
  co.client_name = cfg.node_name;
  co.reconnect_ms = cfg.srv.client_timeout_s * 1000;
  // The server must be able to read every decision this client may leave in
  // its RMs: it refuses a client whose RMs it does not have.
  for (const tm::RmSpec& spec : cfg.rms) {
    server::ClientRm r;
    r.name = spec.name;
    r.type = static_cast<uint8_t>(spec.type);
    r.identity = rm::IdentityOf(tm::RmTypeName(spec.type), tm::RmParamsOf(spec));
    co.rms.push_back(std::move(r));
  }
  return ServerStore::Connect(co, out);
}

}  // namespace

std::vector<RmIdentity> RmIdentities(const tm::TmConfig& cfg) {
  std::vector<RmIdentity> rms;
  for (const tm::RmSpec& spec : cfg.rms) {
    rms.push_back({spec.name, tm::RmTypeName(spec.type), rm::IdentityOf(tm::RmTypeName(spec.type), tm::RmParamsOf(spec))});
  }
  return rms;
}

Status OpenStore(const tm::TmConfig& cfg, const StoreOptions& opts, std::unique_ptr<DecisionStore>* out) {
  // A client of xatmd (the server itself opens its TM without [tm] server).
  if (!cfg.server.empty()) {
    if (opts.read_only) return Status::InvalidArgument("[tm] server is set: the admin tool works through xatmd (--server)");
    return OpenServerStore(cfg, out);
  }
  if (cfg.log_store == tm::TmConfig::LogStore::kPostgres) {
    return PostgresStore::Open({.conninfo = cfg.log_conninfo,
                                .node_name = cfg.node_name,
                                .lease_s = cfg.lease_s,
                                .synchronous_commit = cfg.log_synchronous_commit,
                                .rms = RmIdentities(cfg),
                                .read_only = opts.read_only,
                                .force = opts.force},
                               out);
  }
  return FileStore::Open({.dir = cfg.log_dir,
                          .node_name = cfg.node_name,
                          .segment_bytes = static_cast<uint64_t>(cfg.log_segment_kb) << 10,
                          .read_only = opts.read_only,
                          .force = opts.force},
                         out);
}

}  // namespace xtm::store
