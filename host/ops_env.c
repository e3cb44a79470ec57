/* The environment variables that force kernel variants, checked once when a model loads, so a
   misspelt value stops the program at start instead of failing its first dispatch. */
#include <stdlib.h>
#include <string.h>

#include "asu_ops.h"

typedef struct variant_setting {
  const char *name;
  const char *const *values; /* NULL-terminated */
  const char *expected;
} variant_setting;

static const char *const gemm_values[] = {"register", "texel", "tiled", NULL};
static const char *const attention_values[] = {"buffer", "texel", NULL};

static const variant_setting settings[] = {
    {"ASU_GEMM_VARIANT", gemm_values, "'register', 'texel' or 'tiled'"},
    {"ASU_ATTENTION_VARIANT", attention_values, "'buffer' or 'texel'"},
};

int asu_ops_check_environment(asu_error *err) {
  for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
    const char *v = getenv(settings[i].name);
    if (!v || !*v) continue;
    bool known = false;
    for (const char *const *k = settings[i].values; *k; k++) known = known || !strcmp(v, *k);
    if (!known)
      return asu_error_set(err, ASU_ERR_INVALID, "%s is '%s'; expected %s, or unset it to let "
                           "the device's features choose", settings[i].name, v,
                           settings[i].expected);
  }
  return ASU_OK;
}
