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

// The sum and the max of a piece's elements, its element i, the piece c of a row that is 1 at
// element t of the row and 0 elsewhere, and `value` where p > 0 and 0 elsewhere.
#ifdef TEXEL
float piece_sum(vec4 v) { return (v.x + v.y) + (v.z + v.w); }
float piece_max(vec4 v) { return max(max(v.x, v.y), max(v.z, v.w)); }
float piece_element(vec4 v, uint i) { return v[i]; }
vec4 piece_one_hot(uint c, uint t) { return vec4(equal(uvec4(4 * c) + uvec4(0, 1, 2, 3), uvec4(t))); }
vec4 piece_where_positive(vec4 p, vec4 value) { return mix(vec4(0.0), value, greaterThan(p, vec4(0.0))); }
#else
float piece_sum(float v) { return v; }
float piece_max(float v) { return v; }
float piece_element(float v, uint i) { return v; }
float piece_one_hot(uint c, uint t) { return c == t ? 1.0 : 0.0; }
float piece_where_positive(float p, float value) { return p > 0.0 ? value : 0.0; }
#endif
