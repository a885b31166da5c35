"""Run folders: the spec (assembled from the sections each layer declares), the pipeline
spec → data → VAE → fit → folder, resume, the check pipeline and the families listing."""
