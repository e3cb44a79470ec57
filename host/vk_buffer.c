/* Device buffers and their transfers to and from host memory. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

static void track_usage(asu_device *dev, int64_t delta) {
  pthread_mutex_lock(&dev->usage_lock);
  dev->memory_current = (uint64_t)((int64_t)dev->memory_current + delta);
  if (dev->memory_current > dev->memory_peak) dev->memory_peak = dev->memory_current;
  pthread_mutex_unlock(&dev->usage_lock);
}

/* A buffer in memory of memory_type, mapped when `map`. Pooled buffers share memory blocks;
   staging buffers, which live for one transfer, get their own. */
static int create_with_type(asu_device *dev, size_t bytes, uint32_t memory_type, bool map,
                            bool pooled, asu_buffer **out, asu_error *err) {
  *out = NULL;
  if (bytes == 0) bytes = 4; /* zero-sized Vulkan buffers are invalid; keep a word */
  if (bytes > dev->info.max_storage_buffer_range)
    return asu_error_set(err, ASU_ERR_LIMIT,
                         "a buffer of %zu bytes is over the device's storage buffer limit of "
                         "%llu bytes",
                         bytes, (unsigned long long)dev->info.max_storage_buffer_range);
  asu_buffer *buf = calloc(1, sizeof *buf);
  if (!buf) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  buf->dev = dev;
  buf->size = bytes;

  /* Whole texels of 16 bytes, so that a texel view covers every byte. */
  VkBufferCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
      .size = (bytes + 15) / 16 * 16,
      .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
               VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
      .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
  };
  VkResult r = vkCreateBuffer(dev->device, &info, NULL, &buf->buffer);
  if (r != VK_SUCCESS) {
    free(buf);
    return asu_vk_fail(err, r, "vkCreateBuffer");
  }
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(dev->device, buf->buffer, &req);
  VkMemoryPropertyFlags flags = dev->memory_properties.memoryTypes[memory_type].propertyFlags;
  int type = (req.memoryTypeBits & (1u << memory_type))
                 ? (int)memory_type
                 : asu_vk_find_memory_type(dev, req.memoryTypeBits, flags);
  if (type < 0) {
    vkDestroyBuffer(dev->device, buf->buffer, NULL);
    free(buf);
    return asu_error_set(err, ASU_ERR_VULKAN, "no memory type fits a buffer of %zu bytes", bytes);
  }
  int rc = asu_pool_alloc(dev, &req, (uint32_t)type, map, pooled, &buf->alloc, err);
  if (!rc) {
    buf->alloc_size = req.size;
    r = vkBindBufferMemory(dev->device, buf->buffer, buf->alloc.memory, buf->alloc.offset);
    if (r != VK_SUCCESS) {
      rc = asu_vk_fail(err, r, "vkBindBufferMemory");
      asu_pool_free(dev, &buf->alloc, buf->alloc_size);
    }
  }
  if (rc) {
    asu_error_wrap(err, "a buffer of %zu bytes: ", bytes);
    vkDestroyBuffer(dev->device, buf->buffer, NULL);
    free(buf);
    return rc;
  }
  buf->mapped = buf->alloc.mapped;
  track_usage(dev, (int64_t)req.size);
  buf->size = bytes;
  *out = buf;
  return ASU_OK;
}

/* Gives buf a view as texels of 4 elements when the device can address that many texels.
   Without one, kernels that read through texel buffers fall back to storage-buffer loads. */
static int create_texel_view(asu_buffer *buf, asu_error *err) {
  VkDeviceSize texel_bytes = buf->element == ASU_ELEMENT_F16 ? 8 : 16;
  VkDeviceSize texels = (buf->size + texel_bytes - 1) / texel_bytes;
  if (texels > buf->dev->info.max_texel_buffer_elements) return ASU_OK;
  VkBufferViewCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
      .buffer = buf->buffer,
      .format = buf->element == ASU_ELEMENT_F16 ? VK_FORMAT_R16G16B16A16_SFLOAT
                                                : VK_FORMAT_R32G32B32A32_SFLOAT,
      .offset = 0,
      .range = texels * texel_bytes,
  };
  VkResult r = vkCreateBufferView(buf->dev->device, &info, NULL, &buf->texels);
  if (r != VK_SUCCESS) return asu_vk_fail(err, r, "vkCreateBufferView");
  return ASU_OK;
}

int asu_buffer_create(asu_device *dev, size_t bytes, asu_buffer **out, asu_error *err) {
  return asu_buffer_create_elements(dev, bytes, ASU_ELEMENT_F32, out, err);
}

int asu_buffer_create_elements(asu_device *dev, size_t bytes, asu_element element,
                               asu_buffer **out, asu_error *err) {
  int rc = create_with_type(dev, bytes, dev->device_local_type, dev->info.unified_memory, true,
                            out, err);
  if (!rc) {
    (*out)->element = element;
    rc = create_texel_view(*out, err);
  }
  if (rc && *out) {
    asu_buffer_destroy(*out);
    *out = NULL;
  }
  return rc;
}

bool asu_buffer_has_texels(const asu_buffer *buf) { return buf->texels != VK_NULL_HANDLE; }

asu_element asu_buffer_element(const asu_buffer *buf) { return buf->element; }

void asu_buffer_destroy(asu_buffer *buf) {
  if (!buf) return;
  asu_device *dev = buf->dev;
  if (buf->texels) vkDestroyBufferView(dev->device, buf->texels, NULL);
  vkDestroyBuffer(dev->device, buf->buffer, NULL);
  asu_pool_free(dev, &buf->alloc, buf->alloc_size);
  track_usage(dev, -(int64_t)buf->alloc_size);
  free(buf);
}

size_t asu_buffer_size(const asu_buffer *buf) { return buf->size; }

static int check_range(const asu_buffer *buf, size_t offset, size_t bytes, const char *what,
                       asu_error *err) {
  if (offset > buf->size || bytes > buf->size - offset)
    return asu_error_set(err, ASU_ERR_INVALID,
                         "%s of %zu bytes at offset %zu is outside a buffer of %zu bytes", what,
                         bytes, offset, buf->size);
  return ASU_OK;
}

/* Copies between buf and a temporary host-visible buffer, in the direction given. */
static int staged_transfer(asu_buffer *buf, size_t offset, void *host, size_t bytes, bool upload,
                           asu_error *err) {
  asu_device *dev = buf->dev;
  asu_buffer *staging = NULL;
  int rc = create_with_type(dev, bytes, dev->staging_type, true, false, &staging, err);
  if (rc) return rc;
  if (upload) memcpy(staging->mapped, host, bytes);
  asu_cmd *cmd = NULL;
  rc = asu_cmd_begin(dev, &cmd, err);
  if (!rc) {
    if (upload) asu_cmd_copy(cmd, staging, 0, buf, offset, bytes);
    else asu_cmd_copy(cmd, buf, offset, staging, 0, bytes);
    rc = asu_cmd_submit(cmd, err);
  }
  asu_cmd_destroy(cmd);
  if (!rc && !upload) memcpy(host, staging->mapped, bytes);
  asu_buffer_destroy(staging);
  return rc;
}

int asu_buffer_upload(asu_buffer *buf, size_t offset, const void *src, size_t bytes,
                      asu_error *err) {
  int rc = check_range(buf, offset, bytes, "an upload", err);
  if (rc || bytes == 0) return rc;
  if (buf->mapped) {
    memcpy((char *)buf->mapped + offset, src, bytes);
    return ASU_OK;
  }
  return staged_transfer(buf, offset, (void *)src, bytes, true, err);
}

int asu_buffer_download(const asu_buffer *buf, size_t offset, void *dst, size_t bytes,
                        asu_error *err) {
  int rc = check_range(buf, offset, bytes, "a download", err);
  if (rc || bytes == 0) return rc;
  if (buf->mapped) {
    memcpy(dst, (const char *)buf->mapped + offset, bytes);
    return ASU_OK;
  }
  return staged_transfer((asu_buffer *)buf, offset, dst, bytes, false, err);
}
