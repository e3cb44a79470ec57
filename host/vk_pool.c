/* Device memory blocks that buffers share. A model has hundreds of tensors, activations and
   optimiser states. One allocation each can run into the driver's allocation limit (Vulkan
   guarantees only 4096) and costs a call per buffer. Buffers up to a quarter of a block are
   placed in blocks of POOL_BLOCK_BYTES, first fit; larger ones get their own allocation. */
#include <stdlib.h>

#include "vk_internal.h"

enum { POOL_BLOCK_BYTES = 64 << 20 };

typedef struct pool_range {
  VkDeviceSize offset, size;
} pool_range;

struct asu_memory_block {
  struct asu_memory_block *next;
  VkDeviceMemory memory;
  uint32_t type;
  VkDeviceSize size, used;
  void *mapped;      /* the whole block, when its buffers are mapped */
  pool_range *free;  /* free ranges sorted by offset, none adjacent */
  uint32_t n_free, cap_free;
};

static VkDeviceSize align_up(VkDeviceSize x, VkDeviceSize alignment) {
  return alignment ? (x + alignment - 1) / alignment * alignment : x;
}

static bool insert_range(struct asu_memory_block *b, uint32_t at, pool_range r) {
  if (b->n_free == b->cap_free) {
    uint32_t cap = b->cap_free ? 2 * b->cap_free : 16;
    pool_range *grown = realloc(b->free, cap * sizeof *grown);
    if (!grown) return false;
    b->free = grown;
    b->cap_free = cap;
  }
  for (uint32_t i = b->n_free; i > at; i--) b->free[i] = b->free[i - 1];
  b->free[at] = r;
  b->n_free++;
  return true;
}

static void remove_range(struct asu_memory_block *b, uint32_t at) {
  for (uint32_t i = at; i + 1 < b->n_free; i++) b->free[i] = b->free[i + 1];
  b->n_free--;
}

/* Takes size bytes at an aligned offset from the first free range with room for them. The parts
   of that range before and after stay free. Returns false when no range has room. */
static bool take(struct asu_memory_block *b, VkDeviceSize size, VkDeviceSize alignment,
                 VkDeviceSize *offset) {
  for (uint32_t i = 0; i < b->n_free; i++) {
    pool_range r = b->free[i];
    VkDeviceSize start = align_up(r.offset, alignment);
    if (start + size > r.offset + r.size) continue;
    pool_range before = {r.offset, start - r.offset};
    pool_range after = {start + size, r.offset + r.size - (start + size)};
    remove_range(b, i);
    if (after.size && !insert_range(b, i, after)) return false;
    if (before.size && !insert_range(b, i, before)) return false;
    b->used += size;
    *offset = start;
    return true;
  }
  return false;
}

/* Returns [offset, offset + size) to the free ranges, merged with its neighbours. */
static void give_back(struct asu_memory_block *b, VkDeviceSize offset, VkDeviceSize size) {
  uint32_t at = 0;
  while (at < b->n_free && b->free[at].offset < offset) at++;
  pool_range r = {offset, size};
  if (at > 0 && b->free[at - 1].offset + b->free[at - 1].size == offset) {
    r.offset = b->free[at - 1].offset;
    r.size += b->free[at - 1].size;
    remove_range(b, --at);
  }
  if (at < b->n_free && r.offset + r.size == b->free[at].offset) {
    r.size += b->free[at].size;
    remove_range(b, at);
  }
  /* Only running out of host memory fails the insert; the range then stays unused until the
     whole block is freed. */
  insert_range(b, at, r);
  b->used -= size;
}

/* Allocates `size` bytes of memory of `type`, mapped for the host when `map`. */
static int allocate(asu_device *dev, VkDeviceSize size, uint32_t type, bool map,
                    VkDeviceMemory *memory, void **mapped, asu_error *err) {
  VkMemoryAllocateInfo info = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
      .allocationSize = size,
      .memoryTypeIndex = type,
  };
  *memory = VK_NULL_HANDLE;
  *mapped = NULL;
  VkResult r = vkAllocateMemory(dev->device, &info, NULL, memory);
  if (r == VK_SUCCESS && map) r = vkMapMemory(dev->device, *memory, 0, VK_WHOLE_SIZE, 0, mapped);
  if (r == VK_SUCCESS) return ASU_OK;
  if (*memory) vkFreeMemory(dev->device, *memory, NULL);
  *memory = VK_NULL_HANDLE;
  return asu_vk_fail(err, r, "allocating device memory");
}

static int new_block(asu_device *dev, uint32_t type, bool map, struct asu_memory_block **out,
                     asu_error *err) {
  struct asu_memory_block *b = calloc(1, sizeof *b);
  if (!b) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  b->type = type;
  b->size = POOL_BLOCK_BYTES;
  int rc = allocate(dev, b->size, type, map, &b->memory, &b->mapped, err);
  if (!rc && !insert_range(b, 0, (pool_range){0, b->size}))
    rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (rc) {
    if (b->mapped) vkUnmapMemory(dev->device, b->memory);
    if (b->memory) vkFreeMemory(dev->device, b->memory, NULL);
    free(b->free);
    free(b);
    return rc;
  }
  b->next = dev->blocks;
  dev->blocks = b;
  *out = b;
  return ASU_OK;
}

static void free_block(asu_device *dev, struct asu_memory_block *b) {
  struct asu_memory_block **link = &dev->blocks;
  while (*link != b) link = &(*link)->next;
  *link = b->next;
  if (b->mapped) vkUnmapMemory(dev->device, b->memory);
  vkFreeMemory(dev->device, b->memory, NULL);
  free(b->free);
  free(b);
}

int asu_pool_alloc(asu_device *dev, const VkMemoryRequirements *req, uint32_t type, bool map,
                   bool pooled, asu_allocation *out, asu_error *err) {
  if (!pooled || req->size > POOL_BLOCK_BYTES / 4) {
    *out = (asu_allocation){0};
    return allocate(dev, req->size, type, map, &out->memory, &out->mapped, err);
  }
  pthread_mutex_lock(&dev->pool_lock);
  struct asu_memory_block *b = dev->blocks;
  VkDeviceSize offset = 0;
  while (b && !(b->type == type && (b->mapped != NULL) == map &&
                take(b, req->size, req->alignment, &offset)))
    b = b->next;
  int rc = ASU_OK;
  if (!b && !(rc = new_block(dev, type, map, &b, err)) &&
      !take(b, req->size, req->alignment, &offset))
    rc = asu_error_set(err, ASU_ERR_INTERNAL, "a new memory block has no room for %llu bytes",
                       (unsigned long long)req->size);
  if (!rc) {
    *out = (asu_allocation){.memory = b->memory, .offset = offset, .block = b,
                            .mapped = b->mapped ? (char *)b->mapped + offset : NULL};
  }
  pthread_mutex_unlock(&dev->pool_lock);
  return rc;
}

void asu_pool_free(asu_device *dev, const asu_allocation *a, VkDeviceSize size) {
  if (!a->block) {
    if (a->mapped) vkUnmapMemory(dev->device, a->memory);
    vkFreeMemory(dev->device, a->memory, NULL);
    return;
  }
  pthread_mutex_lock(&dev->pool_lock);
  give_back(a->block, a->offset, size);
  if (a->block->used == 0) free_block(dev, a->block);
  pthread_mutex_unlock(&dev->pool_lock);
}

uint32_t asu_pool_block_count(asu_device *dev) {
  pthread_mutex_lock(&dev->pool_lock);
  uint32_t n = 0;
  for (struct asu_memory_block *b = dev->blocks; b; b = b->next) n++;
  pthread_mutex_unlock(&dev->pool_lock);
  return n;
}

void asu_pool_destroy(asu_device *dev) {
  while (dev->blocks) free_block(dev, dev->blocks);
}
