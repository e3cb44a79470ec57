/* grpc.health.v1.Health: SERVING while the plugin serves, NOT_SERVING once it shuts down. */
#include <string.h>
#include <unistd.h>

#include "health.pb-c.h"
#include "server.h"

#define SERVICE "/grpc.health.v1.Health/"
#define WATCH_POLL_US 100000

static const char *const services[] = {"", "asu.v1.Asu", "inference.GRPCInferenceService",
                                       "grpc.health.v1.Health"};

static bool known_service(const char *name) {
  for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
    if (!strcmp(name, services[i])) return true;
  return false;
}

static Grpc__Health__V1__HealthCheckResponse__ServingStatus status_now(asu_server *s) {
  return atomic_load(&s->shutting_down) ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                                        : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

static Grpc__Health__V1__HealthCheckRequest *recv_check(asu_rpc_call *c) {
  return (Grpc__Health__V1__HealthCheckRequest *)asu_rpc_recv_request(
      c, &grpc__health__v1__health_check_request__descriptor);
}

static int handle_check(asu_server *s, asu_rpc_call *c) {
  Grpc__Health__V1__HealthCheckRequest *req = recv_check(c);
  if (!req) return 0;
  if (!known_service(req->service)) {
    asu_reject(c, GRPC_STATUS_NOT_FOUND, "unknown service \"%.80s\"; this server has "
               "asu.v1.Asu, inference.GRPCInferenceService and grpc.health.v1.Health",
               req->service);
  } else {
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = status_now(s);
    asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

/* Sends the status, then each change, until the client leaves or the server stops. */
static int handle_watch(asu_server *s, asu_rpc_call *c) {
  Grpc__Health__V1__HealthCheckRequest *req = recv_check(c);
  if (!req) return 0;
  Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  bool known = known_service(req->service);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  r.status = known ? status_now(s)
                   : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
  if (asu_rpc_send(c, &r.base) != 0) return 0;
  while (known && !asu_rpc_cancelled(c)) {
    if (status_now(s) != r.status) {
      r.status = status_now(s);
      if (asu_rpc_send(c, &r.base) != 0) return 0;
    }
    usleep(WATCH_POLL_US);
  }
  asu_rpc_finish(c, NULL, GRPC_STATUS_OK, "");
  return 0;
}

static const asu_rpc_method methods[] = {
    {SERVICE "Check", handle_check, false},
    {SERVICE "Watch", handle_watch, false},
};

const asu_rpc_method *asu_health_methods(size_t *count) {
  *count = sizeof methods / sizeof methods[0];
  return methods;
}
