"""Training a flow on clean, adversarial or hybrid batches: options, batches, checkpoints, processes, the loop, runs."""
