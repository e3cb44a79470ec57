/* The Vulkan runtime: device selection, buffers, compute kernels built from the embedded SPIR-V,
   and command recording. Every call that can fail returns an asu_status and fills an asu_error.

   Kernels take their storage buffers through push descriptors (binding i of set 0 is buffers[i])
   and their scalar arguments as push constants, at most 128 bytes. A command records any number of
   dispatches, each followed by a compute-to-compute memory barrier, and is submitted once. */
#ifndef ASU_VK_H
#define ASU_VK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asu_error.h"

typedef struct asu_device asu_device;
typedef struct asu_buffer asu_buffer;
typedef struct asu_cmd asu_cmd;
typedef struct asu_kernel asu_kernel;

/* Device properties that kernels and variants are chosen from. */
typedef struct asu_device_info {
  char name[256];
  uint32_t vendor_id;
  uint32_t device_id;
  const char *type_name;       /* "discrete GPU", "integrated GPU", "CPU", ... */
  uint32_t subgroup_size;
  uint32_t max_shared_memory;  /* bytes of shared memory per workgroup */
  uint32_t max_workgroup_invocations;
  uint32_t max_workgroup_count[3];
  uint64_t max_storage_buffer_range;
  uint32_t max_texel_buffer_elements;
  uint64_t device_memory;      /* bytes in the largest device-local heap */
  bool shader_float16;         /* 16-bit float arithmetic in shaders */
  bool storage_buffer_16bit;   /* 16-bit loads and stores in storage buffers */
  bool unified_memory;         /* device-local memory is also host-visible */
} asu_device_info;

/* Creates a device. selector is a device index or a substring of its name; when NULL the
   environment variable ASU_DEVICE is used, and when that is unset too, the first discrete GPU,
   then integrated GPU, then CPU. Logs the chosen device and its properties. */
int asu_device_create(const char *selector, asu_device **out, asu_error *err);
void asu_device_destroy(asu_device *dev);
const asu_device_info *asu_device_get_info(const asu_device *dev);

/* What a buffer's elements are: 32-bit floats (and other 32-bit words), or 16-bit floats that
   kernels read through texel buffers and widen to 32 bits. */
typedef enum asu_element { ASU_ELEMENT_F32, ASU_ELEMENT_F16 } asu_element;

/* Buffers live in device-local memory. Uploads and downloads go through a staging buffer unless
   the memory is host-visible. Sizes are in bytes. */
int asu_buffer_create(asu_device *dev, size_t bytes, asu_buffer **out, asu_error *err);
/* A buffer whose texel view (asu_buffer_has_texels) reads 4 elements of type `element` a texel;
   asu_buffer_create makes F32 buffers. */
int asu_buffer_create_elements(asu_device *dev, size_t bytes, asu_element element,
                               asu_buffer **out, asu_error *err);
asu_element asu_buffer_element(const asu_buffer *buf);
void asu_buffer_destroy(asu_buffer *buf);
size_t asu_buffer_size(const asu_buffer *buf);
/* Whether kernels can read buf as a uniform texel buffer of texels of 4 elements (a view of
   the whole buffer, which the device's texel limit may not allow). A shader reads them as vec4. */
bool asu_buffer_has_texels(const asu_buffer *buf);
int asu_buffer_upload(asu_buffer *buf, size_t offset, const void *src, size_t bytes, asu_error *err);
int asu_buffer_download(const asu_buffer *buf, size_t offset, void *dst, size_t bytes, asu_error *err);
/* Total bytes of device memory this device's buffers hold now, and the peak since creation. */
void asu_device_memory_usage(const asu_device *dev, uint64_t *current, uint64_t *peak);

/* Returns the compute kernel built from the embedded shader `shader` with the given
   specialization constants (constant_id i takes spec[i]), creating and caching it on first use.
   n_buffers is the number of storage buffer bindings and push_bytes the size of its push
   constant block. Thread-safe. */
int asu_kernel_get(asu_device *dev, const char *shader, const uint32_t *spec, uint32_t n_spec,
                   uint32_t n_buffers, uint32_t push_bytes, asu_kernel **out, asu_error *err);
/* The same, with the bindings whose bit is set in texel_bindings declared as uniform texel
   buffers of 4-element texels (samplerBuffer in GLSL) instead of storage buffers. Their buffers
   must have texels (asu_buffer_has_texels). */
int asu_kernel_get_texel(asu_device *dev, const char *shader, const uint32_t *spec,
                         uint32_t n_spec, uint32_t n_buffers, uint32_t texel_bindings,
                         uint32_t push_bytes, asu_kernel **out, asu_error *err);

/* Starts recording a command. A command belongs to one thread at a time; several threads may
   record and submit their own commands concurrently. */
int asu_cmd_begin(asu_device *dev, asu_cmd **out, asu_error *err);
asu_device *asu_cmd_device(asu_cmd *cmd);

/* Records one dispatch of groups_x * groups_y * groups_z workgroups followed by a barrier.
   A failure while recording is kept in the command and returned by asu_cmd_submit. */
void asu_cmd_dispatch(asu_cmd *cmd, asu_kernel *kernel, asu_buffer *const *buffers,
                      const void *push, uint32_t groups_x, uint32_t groups_y, uint32_t groups_z);
/* Records a fill of `bytes` bytes at `offset` with the 32-bit pattern `word`, then a barrier. */
void asu_cmd_fill(asu_cmd *cmd, asu_buffer *buf, size_t offset, size_t bytes, uint32_t word);
/* Records a copy between buffers, then a barrier. */
void asu_cmd_copy(asu_cmd *cmd, asu_buffer *src, size_t src_offset, asu_buffer *dst,
                  size_t dst_offset, size_t bytes);
/* Records an error found while recording (an op given invalid sizes, say); the first one wins. */
void asu_cmd_fail(asu_cmd *cmd, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Returns the first error recorded so far, or ASU_OK. */
int asu_cmd_status(const asu_cmd *cmd, asu_error *err);

/* Submits the recorded work, waits for it to finish and resets the command for new recording.
   Returns the first recording error instead of submitting if there was one. */
int asu_cmd_submit(asu_cmd *cmd, asu_error *err);
/* Makes the command submit its recorded work by itself after every `dispatches` dispatches (0:
   only in asu_cmd_submit). The queue runs submissions in order, so a long job recorded this way
   makes another thread's command wait for at most one slice of it instead of the whole job. A
   failed slice is kept like a recording error and returned by asu_cmd_submit. */
void asu_cmd_set_flush_every(asu_cmd *cmd, uint32_t dispatches);
/* The setting of asu_cmd_set_flush_every: 0 when the command submits only when asked. */
uint32_t asu_cmd_flush_every(const asu_cmd *cmd);
void asu_cmd_destroy(asu_cmd *cmd);

/* Number of warnings and errors the Khronos validation layer reported in this process
   (ASU_VK_VALIDATION=1); each is also logged. Tests count them as failures. */
uint64_t asu_vk_validation_messages(void);

/* Splits n workgroups into an x, y grid within the device's per-dimension limit; kernels then
   compute their flat group index as gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x
   and return when it is past n. */
void asu_grid_2d(const asu_device *dev, uint32_t n, uint32_t *groups_x, uint32_t *groups_y);

#endif
