/* Vulkan instance and device: selection, properties, creation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_log.h"
#include "vk_internal.h"

const char *asu_vk_result_name(VkResult r) {
  switch (r) {
#define NAME(x) case x: return #x;
    NAME(VK_SUCCESS) NAME(VK_NOT_READY) NAME(VK_TIMEOUT) NAME(VK_INCOMPLETE)
    NAME(VK_ERROR_OUT_OF_HOST_MEMORY) NAME(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    NAME(VK_ERROR_INITIALIZATION_FAILED) NAME(VK_ERROR_DEVICE_LOST)
    NAME(VK_ERROR_MEMORY_MAP_FAILED) NAME(VK_ERROR_LAYER_NOT_PRESENT)
    NAME(VK_ERROR_EXTENSION_NOT_PRESENT) NAME(VK_ERROR_FEATURE_NOT_PRESENT)
    NAME(VK_ERROR_INCOMPATIBLE_DRIVER) NAME(VK_ERROR_TOO_MANY_OBJECTS)
    NAME(VK_ERROR_FORMAT_NOT_SUPPORTED) NAME(VK_ERROR_FRAGMENTED_POOL)
    NAME(VK_ERROR_OUT_OF_POOL_MEMORY) NAME(VK_ERROR_INVALID_SHADER_NV)
#undef NAME
  default: return "VK_ERROR_UNKNOWN";
  }
}

int asu_vk_fail(asu_error *err, VkResult r, const char *what) {
  int code = (r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
                 ? ASU_ERR_NOMEM
                 : ASU_ERR_VULKAN;
  return asu_error_set(err, code, "%s failed: %s (%d)", what, asu_vk_result_name(r), (int)r);
}

static const char *type_name(VkPhysicalDeviceType t) {
  switch (t) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
  case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
  default: return "other";
  }
}

/* Lower is preferred: discrete GPU, integrated GPU, virtual GPU, CPU, other. */
static int type_rank(VkPhysicalDeviceType t) {
  switch (t) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
  case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
  default: return 4;
  }
}

static bool has_extension(VkPhysicalDevice pd, const char *name) {
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL);
  VkExtensionProperties *props = calloc(n ? n : 1, sizeof *props);
  if (!props) return false;
  vkEnumerateDeviceExtensionProperties(pd, NULL, &n, props);
  bool found = false;
  for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(props[i].extensionName, name);
  free(props);
  return found;
}

static bool validation_requested(void) {
  const char *s = getenv("ASU_VK_VALIDATION");
  return s && *s && strcmp(s, "0") != 0;
}

static _Atomic uint64_t validation_messages;

uint64_t asu_vk_validation_messages(void) { return validation_messages; }

static VKAPI_ATTR VkBool32 VKAPI_CALL
on_validation_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                      VkDebugUtilsMessageTypeFlagsEXT types,
                      const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
  (void)types, (void)user;
  if (severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
    validation_messages++;
    asu_log_error("vulkan validation: %s", data->pMessage);
  }
  return VK_FALSE;
}

static const VkDebugUtilsMessengerCreateInfoEXT messenger_info = {
    .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
    .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
    .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                   VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                   VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
    .pfnUserCallback = on_validation_message,
};

/* Creates the messenger that logs and counts validation messages. */
static int create_messenger(asu_device *dev, asu_error *err) {
  PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
      vkGetInstanceProcAddr(dev->instance, "vkCreateDebugUtilsMessengerEXT");
  if (!create)
    return asu_error_set(err, ASU_ERR_VULKAN, "vkCreateDebugUtilsMessengerEXT is not available");
  VkResult r = create(dev->instance, &messenger_info, NULL, &dev->messenger);
  if (r != VK_SUCCESS) return asu_vk_fail(err, r, "vkCreateDebugUtilsMessengerEXT");
  asu_log_info("Khronos validation layer enabled, with synchronization validation");
  return ASU_OK;
}

static int create_instance(asu_device *dev, asu_error *err) {
  VkApplicationInfo app = {
      .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
      .pApplicationName = "asu",
      .apiVersion = VK_API_VERSION_1_2,
  };
  const char *layers[] = {"VK_LAYER_KHRONOS_validation"};
  const char *extensions[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
  /* Synchronization validation checks the barriers between dispatches too. */
  VkValidationFeatureEnableEXT enables[] = {
      VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
  VkValidationFeaturesEXT features = {
      .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
      .pNext = &messenger_info,
      .enabledValidationFeatureCount = 1,
      .pEnabledValidationFeatures = enables,
  };
  VkInstanceCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
      .pApplicationInfo = &app,
  };
  bool validate = validation_requested();
  if (validate) {
    info.pNext = &features;
    info.enabledLayerCount = 1;
    info.ppEnabledLayerNames = layers;
    info.enabledExtensionCount = 1;
    info.ppEnabledExtensionNames = extensions;
  }
  VkResult r = vkCreateInstance(&info, NULL, &dev->instance);
  if (r == VK_ERROR_LAYER_NOT_PRESENT)
    return asu_error_set(err, ASU_ERR_NOT_FOUND, "ASU_VK_VALIDATION is set but the Khronos "
                         "validation layer is not installed (apt-get install "
                         "vulkan-validationlayers)");
  if (r != VK_SUCCESS) {
    asu_vk_fail(err, r, "vkCreateInstance");
    return asu_error_wrap(err, "no Vulkan driver could be loaded (install mesa-vulkan-drivers "
                               "for the CPU driver lavapipe): ");
  }
  return validate ? create_messenger(dev, err) : ASU_OK;
}

/* Chooses a physical device by selector (index or name substring) or by type preference. */
static int choose_physical(asu_device *dev, const char *selector, asu_error *err) {
  uint32_t n = 0;
  vkEnumeratePhysicalDevices(dev->instance, &n, NULL);
  if (n == 0)
    return asu_error_set(err, ASU_ERR_NOT_FOUND,
                         "no Vulkan device found; install a GPU driver or mesa-vulkan-drivers");
  VkPhysicalDevice *list = calloc(n, sizeof *list);
  if (!list) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory listing devices");
  vkEnumeratePhysicalDevices(dev->instance, &n, list);

  int chosen = -1;
  if (selector && *selector) {
    char *end = NULL;
    long index = strtol(selector, &end, 10);
    if (*end == '\0' && index >= 0 && index < (long)n) chosen = (int)index;
    for (uint32_t i = 0; i < n && chosen < 0; i++) {
      VkPhysicalDeviceProperties p;
      vkGetPhysicalDeviceProperties(list[i], &p);
      if (strstr(p.deviceName, selector)) chosen = (int)i;
    }
  } else {
    int best = 99;
    for (uint32_t i = 0; i < n; i++) {
      VkPhysicalDeviceProperties p;
      vkGetPhysicalDeviceProperties(list[i], &p);
      if (type_rank(p.deviceType) < best) {
        best = type_rank(p.deviceType);
        chosen = (int)i;
      }
    }
  }
  if (chosen < 0) {
    char names[400] = "";
    for (uint32_t i = 0; i < n; i++) {
      VkPhysicalDeviceProperties p;
      vkGetPhysicalDeviceProperties(list[i], &p);
      size_t used = strlen(names);
      snprintf(names + used, sizeof names - used, "%s%u: %s", i ? ", " : "", i, p.deviceName);
    }
    free(list);
    return asu_error_set(err, ASU_ERR_NOT_FOUND,
                         "no Vulkan device matches '%s'; available devices are %s", selector,
                         names);
  }
  dev->physical = list[chosen];
  free(list);
  return ASU_OK;
}

static void read_info(asu_device *dev) {
  VkPhysicalDeviceSubgroupProperties subgroup = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceProperties2 props = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                       .pNext = &subgroup};
  vkGetPhysicalDeviceProperties2(dev->physical, &props);
  VkPhysicalDeviceVulkan11Features f11 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  VkPhysicalDeviceVulkan12Features f12 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &f11};
  VkPhysicalDeviceFeatures2 features = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                        .pNext = &f12};
  vkGetPhysicalDeviceFeatures2(dev->physical, &features);

  asu_device_info *info = &dev->info;
  const VkPhysicalDeviceLimits *lim = &props.properties.limits;
  snprintf(info->name, sizeof info->name, "%s", props.properties.deviceName);
  info->vendor_id = props.properties.vendorID;
  info->device_id = props.properties.deviceID;
  info->type_name = type_name(props.properties.deviceType);
  info->subgroup_size = subgroup.subgroupSize;
  info->max_shared_memory = lim->maxComputeSharedMemorySize;
  info->max_workgroup_invocations = lim->maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; i++) info->max_workgroup_count[i] = lim->maxComputeWorkGroupCount[i];
  info->max_storage_buffer_range = lim->maxStorageBufferRange;
  info->max_texel_buffer_elements = lim->maxTexelBufferElements;
  info->shader_float16 = f12.shaderFloat16;
  info->storage_buffer_16bit = f11.storageBuffer16BitAccess;

  vkGetPhysicalDeviceMemoryProperties(dev->physical, &dev->memory_properties);
  for (uint32_t i = 0; i < dev->memory_properties.memoryHeapCount; i++) {
    const VkMemoryHeap *h = &dev->memory_properties.memoryHeaps[i];
    if ((h->flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && h->size > info->device_memory)
      info->device_memory = h->size;
  }
}

static int create_logical(asu_device *dev, asu_error *err) {
  uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(dev->physical, &n, NULL);
  VkQueueFamilyProperties *families = calloc(n ? n : 1, sizeof *families);
  if (!families) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  vkGetPhysicalDeviceQueueFamilyProperties(dev->physical, &n, families);
  int family = -1;
  for (uint32_t i = 0; i < n && family < 0; i++)
    if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) family = (int)i;
  free(families);
  if (family < 0)
    return asu_error_set(err, ASU_ERR_NOT_FOUND, "device '%s' has no compute queue",
                         dev->info.name);
  dev->queue_family = (uint32_t)family;

  if (!has_extension(dev->physical, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME))
    return asu_error_set(err, ASU_ERR_NOT_FOUND,
                         "device '%s' lacks %s, which the kernels need; choose another device "
                         "with ASU_DEVICE",
                         dev->info.name, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);

  float priority = 1.0f;
  VkDeviceQueueCreateInfo queue = {
      .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
      .queueFamilyIndex = dev->queue_family,
      .queueCount = 1,
      .pQueuePriorities = &priority,
  };
  VkPhysicalDeviceVulkan11Features f11 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
      .storageBuffer16BitAccess = dev->info.storage_buffer_16bit,
  };
  VkPhysicalDeviceVulkan12Features f12 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
      .pNext = &f11,
      .shaderFloat16 = dev->info.shader_float16,
  };
  const char *extensions[] = {VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME};
  VkDeviceCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
      .pNext = &f12,
      .queueCreateInfoCount = 1,
      .pQueueCreateInfos = &queue,
      .enabledExtensionCount = 1,
      .ppEnabledExtensionNames = extensions,
  };
  VkResult r = vkCreateDevice(dev->physical, &info, NULL, &dev->device);
  if (r != VK_SUCCESS) return asu_vk_fail(err, r, "vkCreateDevice");
  vkGetDeviceQueue(dev->device, dev->queue_family, 0, &dev->queue);
  dev->push_descriptor_set = (PFN_vkCmdPushDescriptorSetKHR)vkGetDeviceProcAddr(
      dev->device, "vkCmdPushDescriptorSetKHR");
  if (!dev->push_descriptor_set)
    return asu_error_set(err, ASU_ERR_VULKAN, "vkCmdPushDescriptorSetKHR is not available");
  return ASU_OK;
}

static int choose_memory_types(asu_device *dev, asu_error *err) {
  /* Every type bit is allowed here; buffers check their own requirements on allocation. */
  int local = asu_vk_find_memory_type(dev, ~0u, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  int staging = asu_vk_find_memory_type(
      dev, ~0u, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  if (staging < 0)
    return asu_error_set(err, ASU_ERR_VULKAN, "device '%s' has no host-visible coherent memory",
                         dev->info.name);
  if (local < 0) local = staging;
  dev->device_local_type = (uint32_t)local;
  dev->staging_type = (uint32_t)staging;
  VkMemoryPropertyFlags flags = dev->memory_properties.memoryTypes[local].propertyFlags;
  dev->info.unified_memory = (flags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) &&
                             (flags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  return ASU_OK;
}

int asu_vk_find_memory_type(const asu_device *dev, uint32_t type_bits,
                            VkMemoryPropertyFlags required) {
  const VkPhysicalDeviceMemoryProperties *mp = &dev->memory_properties;
  for (uint32_t i = 0; i < mp->memoryTypeCount; i++)
    if ((type_bits & (1u << i)) && (mp->memoryTypes[i].propertyFlags & required) == required)
      return (int)i;
  return -1;
}

int asu_device_create(const char *selector, asu_device **out, asu_error *err) {
  *out = NULL;
  asu_device *dev = calloc(1, sizeof *dev);
  if (!dev) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory creating a device");
  pthread_mutex_init(&dev->queue_lock, NULL);
  pthread_mutex_init(&dev->kernels_lock, NULL);
  pthread_mutex_init(&dev->usage_lock, NULL);
  pthread_mutex_init(&dev->pool_lock, NULL);
  if (!selector) selector = getenv("ASU_DEVICE");

  int rc = create_instance(dev, err);
  if (!rc) rc = choose_physical(dev, selector, err);
  if (!rc) read_info(dev);
  if (!rc) rc = create_logical(dev, err);
  if (!rc) rc = choose_memory_types(dev, err);
  if (!rc) asu_pipeline_cache_open(dev);
  if (rc) {
    asu_device_destroy(dev);
    return rc;
  }
  const char *profile = getenv("ASU_PROFILE");
  dev->profile = profile && *profile && strcmp(profile, "0") != 0;
  /* ASU_TEXELS=0 gives buffers no texel views, so every kernel reads storage buffers. */
  const char *texels = getenv("ASU_TEXELS");
  if (texels && !strcmp(texels, "0")) dev->info.max_texel_buffer_elements = 0;
  else if (texels && *texels && strcmp(texels, "1") != 0)
    asu_log_warn("ASU_TEXELS is '%s', which is ignored: set 0 to turn texel reads off", texels);
  const asu_device_info *i = &dev->info;
  asu_log_info("vulkan device: %s (%s, vendor 0x%04x), subgroup size %u, shared memory %u bytes, "
               "fp16 arithmetic %s, 16-bit storage %s, device memory %.1f GiB%s",
               i->name, i->type_name, i->vendor_id, i->subgroup_size, i->max_shared_memory,
               i->shader_float16 ? "yes" : "no", i->storage_buffer_16bit ? "yes" : "no",
               (double)i->device_memory / (1 << 30), i->unified_memory ? ", unified" : "");
  *out = dev;
  return ASU_OK;
}

void asu_device_destroy(asu_device *dev) {
  if (!dev) return;
  if (dev->profile) asu_profile_report(dev);
  if (dev->device) {
    vkDeviceWaitIdle(dev->device);
    asu_kernels_destroy(dev);
    asu_pipeline_cache_save(dev);
    asu_pool_destroy(dev);
    vkDestroyDevice(dev->device, NULL);
  }
  if (dev->messenger) {
    PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
        vkGetInstanceProcAddr(dev->instance, "vkDestroyDebugUtilsMessengerEXT");
    if (destroy) destroy(dev->instance, dev->messenger, NULL);
  }
  if (dev->instance) vkDestroyInstance(dev->instance, NULL);
  pthread_mutex_destroy(&dev->queue_lock);
  pthread_mutex_destroy(&dev->kernels_lock);
  pthread_mutex_destroy(&dev->usage_lock);
  pthread_mutex_destroy(&dev->pool_lock);
  free(dev);
}

const asu_device_info *asu_device_get_info(const asu_device *dev) { return &dev->info; }

void asu_device_memory_usage(const asu_device *dev, uint64_t *current, uint64_t *peak) {
  asu_device *d = (asu_device *)dev;
  pthread_mutex_lock(&d->usage_lock);
  if (current) *current = d->memory_current;
  if (peak) *peak = d->memory_peak;
  pthread_mutex_unlock(&d->usage_lock);
}

void asu_grid_2d(const asu_device *dev, uint32_t n, uint32_t *groups_x, uint32_t *groups_y) {
  uint32_t max_x = dev->info.max_workgroup_count[0];
  if (max_x == 0 || max_x > 65535) max_x = 65535;
  if (n <= max_x) {
    *groups_x = n ? n : 1;
    *groups_y = 1;
  } else {
    *groups_x = max_x;
    *groups_y = (n + max_x - 1) / max_x;
  }
}
