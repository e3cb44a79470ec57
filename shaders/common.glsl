// Helpers shared by the compute shaders.

// Flat index of this workgroup when the host spreads groups over x and y (asu_grid_2d).
uint flat_group_index() {
  return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
}
