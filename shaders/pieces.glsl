// Kernels that are built twice (texel_variant_names in shaders/meson.build) read their large
// inputs through PIECES bindings and work on pieces of WIDTH elements of type VEC.
//
// Built with TEXEL defined, a piece is a vec4 and PIECES bindings are uniform texel buffers of 4
// elements. CPU drivers turn a storage-buffer load that differs between invocations into a loop
// over the lanes with a branch per element, but gather whole texels without branches, and an
// F16 texel view widens its elements on the way. Lengths and row starts must then be multiples
// of 4. Without TEXEL a piece is one float read from a storage buffer, for any length.
#ifdef TEXEL
#define VEC vec4
const uint WIDTH = 4;
#else
#define VEC float
const uint WIDTH = 1;
#endif

// Declares binding B as the read-only input NAME and a function NAME_at(c) that returns piece c,
// counted in pieces from the start of the buffer.
#ifdef TEXEL
#define PIECES(B, NAME) \
  layout(set = 0, binding = B) uniform samplerBuffer NAME##_texels; \
  VEC NAME##_at(uint c) { return texelFetch(NAME##_texels, int(c)); }
#else
#define PIECES(B, NAME) \
  layout(set = 0, binding = B) readonly buffer NAME##_block { float NAME##_floats[]; }; \
  VEC NAME##_at(uint c) { return NAME##_floats[c]; }
#endif
