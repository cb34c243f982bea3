"""Executors run a recipe's stages: `local` on one machine; the Kubernetes operator on a cluster."""
