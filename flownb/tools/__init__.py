"""Tooling around the notebooks, outside the research layers: publishing executed notebooks, the docs site."""
