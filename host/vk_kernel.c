/* Compute kernels: pipelines built from the embedded SPIR-V, cached per shader and constants. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

struct asu_shader_code {
  const char *name;
  const uint32_t *words;
  size_t bytes;
};
extern const struct asu_shader_code asu_shader_table[];

static const struct asu_shader_code *find_shader(const char *name) {
  for (const struct asu_shader_code *s = asu_shader_table; s->name; s++)
    if (!strcmp(s->name, name)) return s;
  return NULL;
}

static bool same_kernel(const asu_kernel *k, const char *shader, const uint32_t *spec,
                        uint32_t n_spec, uint32_t texel_bindings) {
  return !strcmp(k->shader, shader) && k->n_spec == n_spec && k->texel_bindings == texel_bindings &&
         (n_spec == 0 || !memcmp(k->spec, spec, n_spec * sizeof *spec));
}

static void destroy_kernel(asu_device *dev, asu_kernel *k) {
  if (k->pipeline) vkDestroyPipeline(dev->device, k->pipeline, NULL);
  if (k->layout) vkDestroyPipelineLayout(dev->device, k->layout, NULL);
  if (k->set_layout) vkDestroyDescriptorSetLayout(dev->device, k->set_layout, NULL);
  free(k);
}

static int create_layouts(asu_device *dev, asu_kernel *k, asu_error *err) {
  VkDescriptorSetLayoutBinding bindings[16];
  for (uint32_t i = 0; i < k->n_buffers; i++)
    bindings[i] = (VkDescriptorSetLayoutBinding){
        .binding = i,
        .descriptorType = (k->texel_bindings >> i) & 1 ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                       : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .descriptorCount = 1,
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
    };
  VkDescriptorSetLayoutCreateInfo set_info = {
      .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
      .flags = VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR,
      .bindingCount = k->n_buffers,
      .pBindings = bindings,
  };
  VkResult r = vkCreateDescriptorSetLayout(dev->device, &set_info, NULL, &k->set_layout);
  if (r != VK_SUCCESS) return asu_vk_fail(err, r, "vkCreateDescriptorSetLayout");
  VkPushConstantRange range = {
      .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
      .offset = 0,
      .size = k->push_bytes,
  };
  VkPipelineLayoutCreateInfo layout_info = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
      .setLayoutCount = 1,
      .pSetLayouts = &k->set_layout,
      .pushConstantRangeCount = k->push_bytes ? 1 : 0,
      .pPushConstantRanges = &range,
  };
  r = vkCreatePipelineLayout(dev->device, &layout_info, NULL, &k->layout);
  if (r != VK_SUCCESS) return asu_vk_fail(err, r, "vkCreatePipelineLayout");
  return ASU_OK;
}

static int create_pipeline(asu_device *dev, asu_kernel *k, const struct asu_shader_code *code,
                           asu_error *err) {
  VkShaderModuleCreateInfo module_info = {
      .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
      .codeSize = code->bytes,
      .pCode = code->words,
  };
  VkShaderModule module;
  VkResult r = vkCreateShaderModule(dev->device, &module_info, NULL, &module);
  if (r != VK_SUCCESS) return asu_vk_fail(err, r, "vkCreateShaderModule");

  VkSpecializationMapEntry entries[16];
  for (uint32_t i = 0; i < k->n_spec; i++)
    entries[i] = (VkSpecializationMapEntry){
        .constantID = i, .offset = i * 4u, .size = 4};
  VkSpecializationInfo spec = {
      .mapEntryCount = k->n_spec,
      .pMapEntries = entries,
      .dataSize = k->n_spec * 4u,
      .pData = k->spec,
  };
  VkComputePipelineCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .stage = {
          .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
          .stage = VK_SHADER_STAGE_COMPUTE_BIT,
          .module = module,
          .pName = "main",
          .pSpecializationInfo = k->n_spec ? &spec : NULL,
      },
      .layout = k->layout,
  };
  r = vkCreateComputePipelines(dev->device, dev->pipeline_cache, 1, &info, NULL, &k->pipeline);
  vkDestroyShaderModule(dev->device, module, NULL);
  if (r != VK_SUCCESS) return asu_vk_fail(err, r, "vkCreateComputePipelines");
  return ASU_OK;
}

int asu_kernel_get(asu_device *dev, const char *shader, const uint32_t *spec, uint32_t n_spec,
                   uint32_t n_buffers, uint32_t push_bytes, asu_kernel **out, asu_error *err) {
  return asu_kernel_get_texel(dev, shader, spec, n_spec, n_buffers, 0, push_bytes, out, err);
}

int asu_kernel_get_texel(asu_device *dev, const char *shader, const uint32_t *spec,
                         uint32_t n_spec, uint32_t n_buffers, uint32_t texel_bindings,
                         uint32_t push_bytes, asu_kernel **out, asu_error *err) {
  *out = NULL;
  if (n_spec > 16 || n_buffers > 16 || push_bytes > 128 || strlen(shader) >= 64)
    return asu_error_set(err, ASU_ERR_INVALID,
                         "kernel '%s': %u constants, %u buffers or %u push bytes is over the "
                         "limit of 16, 16 and 128",
                         shader, n_spec, n_buffers, push_bytes);
  pthread_mutex_lock(&dev->kernels_lock);
  for (asu_kernel *k = dev->kernels; k; k = k->next) {
    if (same_kernel(k, shader, spec, n_spec, texel_bindings)) {
      pthread_mutex_unlock(&dev->kernels_lock);
      *out = k;
      return ASU_OK;
    }
  }
  int rc = ASU_OK;
  const struct asu_shader_code *code = find_shader(shader);
  asu_kernel *k = code ? calloc(1, sizeof *k) : NULL;
  if (!code) {
    rc = asu_error_set(err, ASU_ERR_NOT_FOUND, "no embedded shader named '%s'", shader);
  } else if (!k) {
    rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  } else {
    strcpy(k->shader, shader);
    if (n_spec) memcpy(k->spec, spec, n_spec * sizeof *spec);
    k->n_spec = n_spec;
    k->n_buffers = n_buffers;
    k->push_bytes = push_bytes;
    k->texel_bindings = texel_bindings;
    rc = create_layouts(dev, k, err);
    if (!rc) rc = create_pipeline(dev, k, code, err);
    if (rc) {
      asu_error_wrap(err, "building kernel '%s': ", shader);
      destroy_kernel(dev, k);
    } else {
      k->next = dev->kernels;
      dev->kernels = k;
      *out = k;
    }
  }
  pthread_mutex_unlock(&dev->kernels_lock);
  return rc;
}

void asu_kernels_destroy(asu_device *dev) {
  asu_kernel *k = dev->kernels;
  while (k) {
    asu_kernel *next = k->next;
    destroy_kernel(dev, k);
    k = next;
  }
  dev->kernels = NULL;
}
