"""Hydra sweeper `hydra/sweeper=nas`: one Hydra job per candidate architecture of the search space."""
