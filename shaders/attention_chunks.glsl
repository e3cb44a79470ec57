// Per-head vectors of the attention kernels, held as CHUNKS pieces of type VEC. The including
// shader declares HEAD_DIM first.
//
// Built with TEXEL defined, a piece is a vec4 and the kernels read their head rows as texels of
// 4 floats from uniform texel buffers. CPU drivers turn a storage-buffer load that differs
// between invocations into a loop over the lanes with a branch per element, but gather whole
// texels without branches. That build needs HEAD_DIM to be a multiple of 4. Without TEXEL a
// piece is one float read from a storage buffer, for any HEAD_DIM.
#ifdef TEXEL
#define VEC vec4
const uint WIDTH = 4;
#else
#define VEC float
const uint WIDTH = 1;
#endif
const uint CHUNKS = HEAD_DIM / WIDTH;

// Declares binding B as the head rows NAME and a function NAME_at(c) that returns piece c,
// counted in pieces from the start of the buffer.
#ifdef TEXEL
#define HEAD_ROWS(B, NAME) \
  layout(set = 0, binding = B) uniform samplerBuffer NAME##_texels; \
  VEC NAME##_at(uint c) { return texelFetch(NAME##_texels, int(c)); }
#else
#define HEAD_ROWS(B, NAME) \
  layout(set = 0, binding = B) readonly buffer NAME##_block { float NAME##_floats[]; }; \
  VEC NAME##_at(uint c) { return NAME##_floats[c]; }
#endif
