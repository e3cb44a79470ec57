/* The pipeline cache on disk, so that a second start compiles no kernel again.

   The file is $ASU_CACHE_DIR/pipelines-VENDOR-DEVICE-DRIVER.bin, or under $XDG_CACHE_HOME/asu or
   ~/.cache/asu when ASU_CACHE_DIR is unset; ASU_CACHE_DIR=off disables it. The driver checks the
   header of the data it is given (vendor, device and cache UUID) and ignores data that does not
   match, so a stale or foreign file costs a recompile, never a wrong kernel. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "asu_log.h"
#include "asu_safetensors.h"
#include "vk_internal.h"

/* Cache files over this size are ignored rather than read. */
#define MAX_CACHE_BYTES (256u << 20)

static int cache_dir(char *out, size_t cap) {
  const char *dir = getenv("ASU_CACHE_DIR");
  if (dir && !strcmp(dir, "off")) return -1;
  if (dir && *dir) {
    snprintf(out, cap, "%s", dir);
    return 0;
  }
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && *xdg) snprintf(out, cap, "%s/asu", xdg);
  else if (home && *home) snprintf(out, cap, "%s/.cache/asu", home);
  else return -1;
  return 0;
}

/* Creates dir and its parents (mode 0755); existing ones are fine. */
static int make_dirs(char *dir) {
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = mkdir(dir, 0755);
    *p = '/';
    if (rc != 0 && errno != EEXIST) return -1;
  }
  return mkdir(dir, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static void cache_path(asu_device *dev, const char *dir, char *out, size_t cap) {
  VkPhysicalDeviceProperties p;
  vkGetPhysicalDeviceProperties(dev->physical, &p);
  snprintf(out, cap, "%s/pipelines-%04x-%04x-%08x.bin", dir, p.vendorID, p.deviceID,
           p.driverVersion);
}

static void *read_cache_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  void *data = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n > 0 && (unsigned long)n <= MAX_CACHE_BYTES && fseek(f, 0, SEEK_SET) == 0) {
      data = malloc((size_t)n);
      if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
      }
      *size = (size_t)n;
    }
  }
  fclose(f);
  return data;
}

void asu_pipeline_cache_open(asu_device *dev) {
  char dir[4096];
  if (cache_dir(dir, sizeof dir)) return;
  cache_path(dev, dir, dev->cache_path, sizeof dev->cache_path);
  size_t size = 0;
  void *data = read_cache_file(dev->cache_path, &size);
  VkPipelineCacheCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
      .initialDataSize = data ? size : 0,
      .pInitialData = data,
  };
  VkResult r = vkCreatePipelineCache(dev->device, &info, NULL, &dev->pipeline_cache);
  if (r != VK_SUCCESS && data) {
    /* A file the driver rejects is dropped, and the cache starts empty. */
    info.initialDataSize = 0;
    info.pInitialData = NULL;
    r = vkCreatePipelineCache(dev->device, &info, NULL, &dev->pipeline_cache);
  }
  if (r != VK_SUCCESS) {
    asu_log_warn("pipeline cache disabled: vkCreatePipelineCache failed: %s",
                 asu_vk_result_name(r));
    dev->pipeline_cache = VK_NULL_HANDLE;
  } else {
    asu_log_debug("pipeline cache %s: %zu bytes read", dev->cache_path, data ? size : 0);
  }
  free(data);
}

void asu_pipeline_cache_save(asu_device *dev) {
  if (!dev->pipeline_cache) return;
  size_t size = 0;
  VkResult r = vkGetPipelineCacheData(dev->device, dev->pipeline_cache, &size, NULL);
  void *data = r == VK_SUCCESS && size ? malloc(size) : NULL;
  if (data) r = vkGetPipelineCacheData(dev->device, dev->pipeline_cache, &size, data);
  char dir[sizeof dev->cache_path];
  snprintf(dir, sizeof dir, "%s", dev->cache_path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  asu_error err;
  if (data && r == VK_SUCCESS) {
    if (make_dirs(dir) != 0)
      asu_log_warn("pipeline cache not saved: cannot create directory %s: %s", dir,
                   strerror(errno));
    else if (asu_write_file_atomic(dev->cache_path, data, size, &err) != ASU_OK)
      asu_log_warn("pipeline cache not saved: %s", err.message);
  }
  free(data);
  vkDestroyPipelineCache(dev->device, dev->pipeline_cache, NULL);
  dev->pipeline_cache = VK_NULL_HANDLE;
}
