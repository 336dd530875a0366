"""ECEA: JPEG-compatible encryption (pixel blocks, standard JPEG, keyed DC permutation in the bitstream)."""
