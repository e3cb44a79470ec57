/* The ASU plugin: the services of ASU (asu.v1.Asu, the Open Inference Protocol
   inference.GRPCInferenceService with its model repository extension, and grpc.health.v1.Health)
   as a shared library that any program owning a gRPC C-core server can load.

   The host owns the server, its ports and its credentials. The plugin registers its methods on
   that server and serves them on threads of its own. Calls to methods it did not register stay
   with the host, which receives them with grpc_server_request_call as usual.

   Lifecycle, in this order:
     1. create   the plugin from a JSON configuration (loads the model and the adapters);
     2. attach   to a server the host created but has not started: registers the methods and a
                 completion queue of the plugin;
     3. the host adds its ports and starts the server, then calls run, which starts serving;
     4. the host calls grpc_server_shutdown_and_notify (and, to end streams at once,
                 grpc_server_cancel_all_calls), then detach, which returns once every call of
                 the plugin has ended;
     5. the host waits for its shutdown tag and destroys the server, then calls destroy.
   Every function that can fail writes a message into error (error_size bytes, always
   terminated) and returns nonzero.

   The configuration is a JSON object:
     "model"               path of the GGUF model to serve (required)
     "adapters"            directory of the adapters (default "./adapters")
     "device"              Vulkan device index or name substring (default: ASU_DEVICE, or the
                           first discrete GPU)
     "auth_token"          when set, every method that changes state requires the metadata
                           "authorization: Bearer <token>"
     "data_root"           directory that paths in requests must lie under; without it, requests
                           cannot name server-side paths
     "max_tokens"          most tokens one generation may ask for (default 4096)
     "max_prompt_bytes"    longest prompt accepted (default 16384)
     "max_queued_jobs"     most jobs waiting to train (default 8)
     "max_calls"           most calls served at once (default 64)
     "checkpoint_every"    steps between the checkpoints of a job (default 25); the job
                           records and checkpoints live in <adapters>/.jobs
     "dispatches_per_submit"  kernel dispatches per queue submission of a training step
                           (default 32), so that a generation waits for one such slice of a
                           running job at most, not for a whole step
     "max_resident_adapters"  adapters kept on the device (default 16); the least recently
                           used ones that no request pins move to host memory
   An unknown key is an error, so a misspelt setting never goes unnoticed. */
#ifndef ASU_PLUGIN_H
#define ASU_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#define ASU_PLUGIN_ABI_VERSION 1u

typedef struct asu_plugin asu_plugin;

typedef struct asu_plugin_api {
  uint32_t abi_version;    /* ASU_PLUGIN_ABI_VERSION of the library */
  uint32_t struct_size;    /* sizeof(asu_plugin_api) of the library */
  const char *version;     /* the library's release, "0.1.0" */
  int (*create)(const char *config_json, asu_plugin **out, char *error, size_t error_size);
  int (*attach)(asu_plugin *p, grpc_server *server, char *error, size_t error_size);
  int (*run)(asu_plugin *p, char *error, size_t error_size);
  void (*detach)(asu_plugin *p);
  void (*destroy)(asu_plugin *p);
} asu_plugin_api;

/* The one exported symbol. Returns the interface of the requested ABI version, or NULL when the
   library does not provide that version. */
#define ASU_PLUGIN_ENTRY "asu_plugin_entry"
typedef const asu_plugin_api *(*asu_plugin_entry_fn)(uint32_t abi_version);
const asu_plugin_api *asu_plugin_entry(uint32_t abi_version);

#endif
