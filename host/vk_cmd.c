/* Command recording and submission. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_log.h"
#include "vk_internal.h"

static void barrier(asu_cmd *cmd) {
  VkMemoryBarrier mb = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
      .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
      .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                       VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
  };
  vkCmdPipelineBarrier(cmd->cb,
                       VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                           VK_PIPELINE_STAGE_HOST_BIT,
                       0, 1, &mb, 0, NULL, 0, NULL);
}

static int begin_recording(asu_cmd *cmd, asu_error *err) {
  VkCommandBufferBeginInfo begin = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
      .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
  };
  VkResult r = vkBeginCommandBuffer(cmd->cb, &begin);
  if (r != VK_SUCCESS) return asu_vk_fail(err, r, "vkBeginCommandBuffer");
  cmd->recording = 1;
  asu_error_clear(&cmd->error);
  return ASU_OK;
}

int asu_cmd_begin(asu_device *dev, asu_cmd **out, asu_error *err) {
  *out = NULL;
  asu_cmd *cmd = calloc(1, sizeof *cmd);
  if (!cmd) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  cmd->dev = dev;
  VkCommandPoolCreateInfo pool_info = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
      .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
      .queueFamilyIndex = dev->queue_family,
  };
  VkResult r = vkCreateCommandPool(dev->device, &pool_info, NULL, &cmd->pool);
  if (r == VK_SUCCESS) {
    VkCommandBufferAllocateInfo alloc = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = cmd->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    r = vkAllocateCommandBuffers(dev->device, &alloc, &cmd->cb);
  }
  if (r == VK_SUCCESS) {
    VkFenceCreateInfo fence_info = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = vkCreateFence(dev->device, &fence_info, NULL, &cmd->fence);
  }
  int rc = r == VK_SUCCESS ? begin_recording(cmd, err) : asu_vk_fail(err, r, "creating a command");
  if (rc) {
    asu_cmd_destroy(cmd);
    return rc;
  }
  *out = cmd;
  return ASU_OK;
}

asu_device *asu_cmd_device(asu_cmd *cmd) { return cmd->dev; }

void asu_cmd_fail(asu_cmd *cmd, int code, const char *fmt, ...) {
  if (cmd->error.code != ASU_OK) return;
  va_list ap;
  va_start(ap, fmt);
  cmd->error.code = code;
  vsnprintf(cmd->error.message, sizeof cmd->error.message, fmt, ap);
  va_end(ap);
}

int asu_cmd_status(const asu_cmd *cmd, asu_error *err) {
  if (cmd->error.code != ASU_OK && err) *err = cmd->error;
  return cmd->error.code;
}

/* Submits everything recorded so far, which ends with the dispatch of `shader`, and charges the
   wall time to that shader. Work recorded before it is charged too, so profiles are exact only
   when every dispatch is profiled. */
static void profile_dispatch(asu_cmd *cmd, const char *shader) {
  double start = asu_monotonic_seconds();
  asu_error err;
  if (asu_cmd_submit(cmd, &err) == ASU_OK) asu_profile_add(cmd->dev, shader, asu_monotonic_seconds() - start);
  else asu_cmd_fail(cmd, err.code, "%s", err.message);
}

void asu_profile_add(asu_device *dev, const char *shader, double seconds) {
  pthread_mutex_lock(&dev->usage_lock);
  uint32_t i = 0;
  while (i < dev->profile_count && strcmp(dev->profile_entries[i].shader, shader)) i++;
  if (i == dev->profile_count && i < sizeof dev->profile_entries / sizeof *dev->profile_entries) {
    snprintf(dev->profile_entries[i].shader, sizeof dev->profile_entries[i].shader, "%s", shader);
    dev->profile_count++;
  }
  if (i < dev->profile_count) {
    dev->profile_entries[i].calls++;
    dev->profile_entries[i].seconds += seconds;
  }
  pthread_mutex_unlock(&dev->usage_lock);
}

void asu_profile_report(asu_device *dev) {
  double total = 0;
  for (uint32_t i = 0; i < dev->profile_count; i++) total += dev->profile_entries[i].seconds;
  for (uint32_t i = 0; i < dev->profile_count; i++) {
    const struct asu_profile_entry *e = &dev->profile_entries[i];
    asu_log_info("profile: %-28s %8llu calls %10.3f s %5.1f%%", e->shader,
                 (unsigned long long)e->calls, e->seconds, total > 0 ? 100 * e->seconds / total : 0);
  }
}

/* Submits the work recorded so far as one slice and goes on recording. */
static void flush_slice(asu_cmd *cmd) {
  asu_error err;
  asu_error_clear(&err);
  if (asu_cmd_submit(cmd, &err) != ASU_OK) cmd->error = err;
}

void asu_cmd_set_flush_every(asu_cmd *cmd, uint32_t dispatches) {
  cmd->flush_every = dispatches;
  cmd->since_flush = 0;
}

uint32_t asu_cmd_flush_every(const asu_cmd *cmd) { return cmd->flush_every; }

void asu_cmd_dispatch(asu_cmd *cmd, asu_kernel *kernel, asu_buffer *const *buffers,
                      const void *push, uint32_t groups_x, uint32_t groups_y, uint32_t groups_z) {
  if (cmd->error.code != ASU_OK) return;
  const asu_device_info *info = &cmd->dev->info;
  if (groups_x > info->max_workgroup_count[0] || groups_y > info->max_workgroup_count[1] ||
      groups_z > info->max_workgroup_count[2]) {
    asu_cmd_fail(cmd, ASU_ERR_LIMIT, "kernel '%s': %u x %u x %u workgroups is over the device limit",
                 kernel->shader, groups_x, groups_y, groups_z);
    return;
  }
  VkDescriptorBufferInfo infos[16];
  VkWriteDescriptorSet writes[16];
  for (uint32_t i = 0; i < kernel->n_buffers; i++) {
    if (!buffers[i]) {
      asu_cmd_fail(cmd, ASU_ERR_INVALID, "kernel '%s': buffer %u is missing", kernel->shader, i);
      return;
    }
    infos[i] = (VkDescriptorBufferInfo){.buffer = buffers[i]->buffer, .offset = 0,
                                        .range = VK_WHOLE_SIZE};
    writes[i] = (VkWriteDescriptorSet){
        .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
        .dstBinding = i,
        .descriptorCount = 1,
        .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .pBufferInfo = &infos[i],
    };
    if ((kernel->texel_bindings >> i) & 1) {
      if (!buffers[i]->texels) {
        asu_cmd_fail(cmd, ASU_ERR_INVALID,
                     "kernel '%s': buffer %u of %zu bytes has no texel view (over the device's "
                     "texel limit); use the storage-buffer variant",
                     kernel->shader, i, buffers[i]->size);
        return;
      }
      writes[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
      writes[i].pBufferInfo = NULL;
      writes[i].pTexelBufferView = &buffers[i]->texels;
    }
  }
  vkCmdBindPipeline(cmd->cb, VK_PIPELINE_BIND_POINT_COMPUTE, kernel->pipeline);
  if (kernel->n_buffers)
    cmd->dev->push_descriptor_set(cmd->cb, VK_PIPELINE_BIND_POINT_COMPUTE, kernel->layout, 0,
                                  kernel->n_buffers, writes);
  if (kernel->push_bytes)
    vkCmdPushConstants(cmd->cb, kernel->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                       kernel->push_bytes, push);
  vkCmdDispatch(cmd->cb, groups_x, groups_y, groups_z);
  barrier(cmd);
  if (cmd->dev->profile) profile_dispatch(cmd, kernel->shader);
  else if (cmd->flush_every && ++cmd->since_flush >= cmd->flush_every) flush_slice(cmd);
}

void asu_cmd_fill(asu_cmd *cmd, asu_buffer *buf, size_t offset, size_t bytes, uint32_t word) {
  if (cmd->error.code != ASU_OK || bytes == 0) return;
  if (offset % 4 || bytes % 4 || offset > buf->size || bytes > buf->size - offset) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "fill of %zu bytes at offset %zu does not fit a buffer of "
                 "%zu bytes in whole words", bytes, offset, buf->size);
    return;
  }
  vkCmdFillBuffer(cmd->cb, buf->buffer, offset, bytes, word);
  barrier(cmd);
}

void asu_cmd_copy(asu_cmd *cmd, asu_buffer *src, size_t src_offset, asu_buffer *dst,
                  size_t dst_offset, size_t bytes) {
  if (cmd->error.code != ASU_OK || bytes == 0) return;
  if (src_offset > src->size || bytes > src->size - src_offset || dst_offset > dst->size ||
      bytes > dst->size - dst_offset) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "copy of %zu bytes is outside its buffers", bytes);
    return;
  }
  VkBufferCopy region = {.srcOffset = src_offset, .dstOffset = dst_offset, .size = bytes};
  vkCmdCopyBuffer(cmd->cb, src->buffer, dst->buffer, 1, &region);
  barrier(cmd);
}

int asu_cmd_submit(asu_cmd *cmd, asu_error *err) {
  asu_device *dev = cmd->dev;
  VkResult r = vkEndCommandBuffer(cmd->cb);
  cmd->recording = 0;
  int rc = cmd->error.code;
  if (rc != ASU_OK) {
    if (err) *err = cmd->error;
  } else if (r != VK_SUCCESS) {
    rc = asu_vk_fail(err, r, "vkEndCommandBuffer");
  } else {
    VkSubmitInfo submit = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &cmd->cb,
    };
    pthread_mutex_lock(&dev->queue_lock);
    r = vkQueueSubmit(dev->queue, 1, &submit, cmd->fence);
    pthread_mutex_unlock(&dev->queue_lock);
    if (r == VK_SUCCESS) r = vkWaitForFences(dev->device, 1, &cmd->fence, VK_TRUE, UINT64_MAX);
    if (r == VK_SUCCESS) r = vkResetFences(dev->device, 1, &cmd->fence);
    if (r != VK_SUCCESS) rc = asu_vk_fail(err, r, "submitting a command");
  }
  vkResetCommandBuffer(cmd->cb, 0);
  cmd->since_flush = 0;
  int rc2 = begin_recording(cmd, rc ? NULL : err);
  return rc ? rc : rc2;
}

void asu_cmd_destroy(asu_cmd *cmd) {
  if (!cmd) return;
  VkDevice d = cmd->dev->device;
  if (cmd->recording) vkEndCommandBuffer(cmd->cb);
  if (cmd->fence) vkDestroyFence(d, cmd->fence, NULL);
  if (cmd->pool) vkDestroyCommandPool(d, cmd->pool, NULL);
  free(cmd);
}
