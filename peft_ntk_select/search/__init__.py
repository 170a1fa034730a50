"""Search stage: spectra of subset kernels, objectives, admissible spaces, and the searches that rank them."""
