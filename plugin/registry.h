/* The adapter registry: every adapter the server can apply, by name, with its version, and the
   active one that Generate uses by default. Adapters live in <dir>/<name>/ (the PEFT files plus
   asu_version.json); <dir>/active.json names the active adapter.

   Hot swap: a generation pins the adapter it starts with (a reference count) and unpins it at
   its end. Replacing an adapter by a new version or activating another one does not wait for
   generations, because a replaced adapter is destroyed only when its last pin is released. */
#ifndef ASU_REGISTRY_H
#define ASU_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "asu_engine.h"
#include "asu_error.h"

/* The directory inside the adapters directory that keeps the job records. */
#define ASU_JOBS_SUBDIR ".jobs"

typedef struct asu_registry asu_registry;
typedef struct asu_adapter_ref asu_adapter_ref;

typedef struct asu_adapter_info {
  char name[65];
  uint32_t version;
  bool active;
  uint32_t rank;
  int64_t created_unix;
  bool resident; /* on the device, rather than moved to host memory */
} asu_adapter_info;

/* Opens (creating it if needed) the adapters directory and loads every adapter in it; one that
   fails to load is logged and skipped. Restores the active adapter from active.json. At most
   max_resident adapters (0: no limit) stay on the device: the least recently used ones that no
   generation pins move to host memory, and back when a generation pins them. */
int asu_registry_open(asu_model *m, const char *dir, unsigned max_resident,
                      asu_registry **out, asu_error *err);
/* Destroys every adapter; no pins may remain. */
void asu_registry_close(asu_registry *r);

/* Saves a trained adapter as the next version of name (atomically replacing the directory),
   registers it and activates it when asked. Takes ownership of lora on success only. */
int asu_registry_add(asu_registry *r, const char *name, asu_lora *lora, bool activate,
                     const char *job_id, asu_adapter_info *out, asu_error *err);

/* Pins an adapter for a generation: name "" is the active adapter (none: *lora = NULL),
   "none" is the base model, anything else a registered adapter (ASU_ERR_NOT_FOUND otherwise).
   *ref is NULL for the base model; info->name is "" then. */
int asu_registry_pin(asu_registry *r, const char *name, const asu_lora **lora,
                     asu_adapter_ref **ref, asu_adapter_info *info, asu_error *err);
void asu_registry_unpin(asu_registry *r, asu_adapter_ref *ref);

/* Makes name the active adapter and records it in active.json. */
int asu_registry_activate(asu_registry *r, const char *name, asu_adapter_info *out,
                          asu_error *err);
/* Makes the base model the default; previous receives the old active name ("" if none). */
int asu_registry_deactivate(asu_registry *r, char previous[65], asu_error *err);

/* Lists the adapters sorted by name (malloc'd array, free with free()). */
int asu_registry_list(asu_registry *r, asu_adapter_info **out, size_t *count, char active[65],
                      asu_error *err);

bool asu_registry_has(asu_registry *r, const char *name);
/* Whether the adapters directory has an adapter of that name, loaded or not. */
bool asu_registry_is_stored(asu_registry *r, const char *name);
/* The current version of a loaded adapter, without pinning it or moving it to the device. */
int asu_registry_info(asu_registry *r, const char *name, asu_adapter_info *out, asu_error *err);

/* Whether the current version of name was saved by job_id (recorded in asu_version.json), and
   which version that is. */
bool asu_registry_saved_by(asu_registry *r, const char *name, const char *job_id,
                           uint32_t *version);

/* Loads the PEFT adapter in src_dir, checking every tensor against the model, and saves it as
   the next version of name. tag names the work directories (one per concurrent import). */
int asu_registry_import(asu_registry *r, const char *name, const char *src_dir, const char *tag,
                        asu_adapter_info *out, asu_error *err);
/* Stops serving name; its files stay. Running generations keep it until they end. The active
   adapter cannot be unloaded (ASU_ERR_PRECONDITION). *version receives the version unloaded. */
int asu_registry_unload(asu_registry *r, const char *name, uint32_t *version, asu_error *err);
/* Loads name again from the adapters directory; an adapter already loaded stays as it is. */
int asu_registry_reload(asu_registry *r, const char *name, asu_adapter_info *out,
                        asu_error *err);
/* The names of every adapter directory, loaded or not (malloc'd array, free with free()). */
int asu_registry_stored(asu_registry *r, char (**names)[65], size_t *count, asu_error *err);

#endif
