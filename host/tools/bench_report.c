/* Results of asu-bench: the list of rows, the table for people and the JSON object. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void bench_add(bench_results *r, const char *name, const char *shape, double value,
              const char *unit, const char *reference, double reference_value) {
  if (r->count == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 32;
    bench_result *items = realloc(r->items, cap * sizeof *items);
    if (!items) {
      r->out_of_memory = true;
      return;
    }
    r->items = items;
    r->cap = cap;
  }
  bench_result *row = &r->items[r->count++];
  memset(row, 0, sizeof *row);
  snprintf(row->name, sizeof row->name, "%s", name);
  snprintf(row->shape, sizeof row->shape, "%s", shape);
  snprintf(row->unit, sizeof row->unit, "%s", unit);
  snprintf(row->reference, sizeof row->reference, "%s", reference ? reference : "");
  row->value = value;
  row->reference_value = reference ? reference_value : NAN;
  fprintf(stderr, "asu-bench: %-20s %-34s %10.4g %-9s", name, shape, value, unit);
  if (reference) fprintf(stderr, " %s %.4g (ratio %.3f)", reference, reference_value,
                         value / reference_value);
  fputc('\n', stderr);
}

void bench_results_free(bench_results *r) {
  free(r->items);
  *r = (bench_results){0};
}

static double ratio_of(const bench_result *row) {
  return row->reference_value > 0 ? row->value / row->reference_value : NAN;
}

void bench_print_table(const bench_machine *machine, const bench_results *r) {
  printf("device: %s (%s, subgroup %u); %ld CPU cores; OpenBLAS with %d threads\n",
         machine->device.name,
         machine->device.type_name ? machine->device.type_name : "unknown",
         machine->device.subgroup_size,
         machine->cpu_cores, machine->blas_threads);
  printf("%-20s %-34s %12s %-9s %-18s %12s %7s\n", "name", "shape", "value", "unit", "reference",
         "ref value", "ratio");
  for (size_t i = 0; i < r->count; i++) {
    const bench_result *row = &r->items[i];
    printf("%-20s %-34s %12.4g %-9s", row->name, row->shape, row->value, row->unit);
    if (isnan(row->reference_value)) printf(" %-18s %12s %7s\n", "-", "-", "-");
    else printf(" %-18s %12.4g %7.3f\n", row->reference, row->reference_value, ratio_of(row));
  }
}

/* A number, or null when it is not finite (JSON has no NaN). */
static cJSON *number_or_null(double v) {
  return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static cJSON *device_object(const bench_machine *machine) {
  const asu_device_info *d = &machine->device;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", d->name);
  cJSON_AddStringToObject(o, "type", d->type_name ? d->type_name : "unknown");
  cJSON_AddNumberToObject(o, "subgroup_size", d->subgroup_size);
  cJSON_AddNumberToObject(o, "vendor_id", d->vendor_id);
  cJSON_AddNumberToObject(o, "device_id", d->device_id);
  cJSON_AddNumberToObject(o, "max_shared_memory", d->max_shared_memory);
  cJSON_AddNumberToObject(o, "device_memory", (double)d->device_memory);
  cJSON_AddBoolToObject(o, "shader_float16", d->shader_float16);
  cJSON_AddBoolToObject(o, "unified_memory", d->unified_memory);
  cJSON_AddNumberToObject(o, "cpu_cores", (double)machine->cpu_cores);
  cJSON_AddNumberToObject(o, "blas_threads", machine->blas_threads);
  cJSON_AddStringToObject(o, "blas", machine->blas_config ? machine->blas_config : "");
  return o;
}

static cJSON *result_object(const bench_result *row) {
  cJSON *o = cJSON_CreateObject();
  bool has_reference = !isnan(row->reference_value);
  cJSON_AddStringToObject(o, "name", row->name);
  cJSON_AddStringToObject(o, "shape", row->shape);
  cJSON_AddItemToObject(o, "value", number_or_null(row->value));
  cJSON_AddStringToObject(o, "unit", row->unit);
  if (has_reference) cJSON_AddStringToObject(o, "reference", row->reference);
  else cJSON_AddNullToObject(o, "reference");
  cJSON_AddItemToObject(o, "reference_value", number_or_null(row->reference_value));
  cJSON_AddItemToObject(o, "ratio", number_or_null(ratio_of(row)));
  return o;
}

int bench_print_json(const bench_machine *machine, const bench_results *r, asu_error *err) {
  cJSON *root = cJSON_CreateObject(), *results = cJSON_CreateArray();
  if (!root || !results) {
    cJSON_Delete(root);
    cJSON_Delete(results);
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory building the JSON output");
  }
  cJSON_AddItemToObject(root, "device", device_object(machine));
  cJSON_AddItemToObject(root, "results", results);
  for (size_t i = 0; i < r->count; i++) cJSON_AddItemToArray(results, result_object(&r->items[i]));
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!text) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory printing the JSON output");
  printf("%s\n", text);
  free(text);
  return ASU_OK;
}
