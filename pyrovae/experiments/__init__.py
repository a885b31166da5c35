"""Experiments that combine a toy problem with the posterior checks: the θ-fixed
experiment of the article "The Intuitive VAE" (Break Yang, 2024)."""
