/* Internal definitions of the Vulkan runtime shared by host/vk_*.c. */
#ifndef ASU_VK_INTERNAL_H
#define ASU_VK_INTERNAL_H

#include <pthread.h>
#include <vulkan/vulkan.h>

#include "asu_vk.h"

struct asu_device {
  VkInstance instance;
  VkDebugUtilsMessengerEXT messenger;  /* with ASU_VK_VALIDATION=1 only */
  VkPhysicalDevice physical;
  VkDevice device;
  VkQueue queue;
  uint32_t queue_family;
  pthread_mutex_t queue_lock;  /* vkQueueSubmit needs external synchronisation */
  VkPhysicalDeviceMemoryProperties memory_properties;
  uint32_t device_local_type;  /* memory type index for buffers */
  uint32_t staging_type;       /* host-visible coherent type for uploads and downloads */
  asu_device_info info;
  PFN_vkCmdPushDescriptorSetKHR push_descriptor_set;

  VkPipelineCache pipeline_cache;  /* VK_NULL_HANDLE when the disk cache is off */
  char cache_path[4200];
  pthread_mutex_t kernels_lock;
  struct asu_kernel *kernels;  /* cache, a singly linked list */

  pthread_mutex_t usage_lock;
  uint64_t memory_current, memory_peak;

  pthread_mutex_t pool_lock;
  struct asu_memory_block *blocks;  /* vk_pool.c */

  /* ASU_PROFILE=1: every dispatch is submitted alone and timed, per shader. */
  bool profile;
  struct asu_profile_entry {
    char shader[64];
    uint64_t calls;
    double seconds;
  } profile_entries[64];
  uint32_t profile_count;
};

/* Where a buffer's memory lies: a range of a shared block, or its own allocation (block NULL). */
typedef struct asu_allocation {
  VkDeviceMemory memory;
  VkDeviceSize offset;
  struct asu_memory_block *block;
  void *mapped;  /* the buffer's first byte, when mapped */
} asu_allocation;

/* Allocates memory of `type` for req: from a shared block when pooled and small enough. map
   maps it for the host. */
int asu_pool_alloc(asu_device *dev, const VkMemoryRequirements *req, uint32_t type, bool map,
                   bool pooled, asu_allocation *out, asu_error *err);
/* Frees an allocation of `size` bytes (the size it was requested with). */
void asu_pool_free(asu_device *dev, const asu_allocation *a, VkDeviceSize size);
uint32_t asu_pool_block_count(asu_device *dev);
/* Frees every block; all buffers must be gone. */
void asu_pool_destroy(asu_device *dev);

struct asu_buffer {
  asu_device *dev;
  VkBuffer buffer;
  asu_allocation alloc;
  VkDeviceSize alloc_size;
  size_t size;
  void *mapped;  /* non-NULL when the memory is host-visible */
  VkBufferView texels;  /* the buffer as texels of 4 elements, or VK_NULL_HANDLE */
  asu_element element;  /* what the texels hold */
};

struct asu_kernel {
  struct asu_kernel *next;
  char shader[64];
  uint32_t spec[16];
  uint32_t n_spec;
  uint32_t n_buffers;
  uint32_t push_bytes;
  uint32_t texel_bindings;  /* bit i: binding i is a uniform texel buffer */
  VkDescriptorSetLayout set_layout;
  VkPipelineLayout layout;
  VkPipeline pipeline;
};

struct asu_cmd {
  asu_device *dev;
  VkCommandPool pool;
  VkCommandBuffer cb;
  VkFence fence;
  int recording;
  asu_error error;
  uint32_t flush_every; /* dispatches between automatic submissions; 0: none */
  uint32_t since_flush;
};

/* Returns a readable name for a VkResult, as in "VK_ERROR_OUT_OF_DEVICE_MEMORY". */
const char *asu_vk_result_name(VkResult r);
/* Sets err from a failed Vulkan call `what` and returns ASU_ERR_VULKAN or ASU_ERR_NOMEM. */
int asu_vk_fail(asu_error *err, VkResult r, const char *what);

/* Finds a memory type allowed by type_bits with all `required` flags, or -1. */
int asu_vk_find_memory_type(const asu_device *dev, uint32_t type_bits,
                            VkMemoryPropertyFlags required);

void asu_kernels_destroy(asu_device *dev);

/* Creates the pipeline cache from its file, if any; without one, pipelines are not cached. */
void asu_pipeline_cache_open(asu_device *dev);
/* Writes the cache back to its file (atomically) and destroys it. */
void asu_pipeline_cache_save(asu_device *dev);

/* Adds one timed dispatch of `shader` to the profile and logs the table when `report`. */
void asu_profile_add(asu_device *dev, const char *shader, double seconds);
void asu_profile_report(asu_device *dev);

#endif
