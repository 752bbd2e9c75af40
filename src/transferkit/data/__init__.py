"""Data: sources (folders, lists, HDF5, arrays), splits, decoding once, transforms from the backbone config."""
