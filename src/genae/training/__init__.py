"""The training loop, checkpoints and run directories."""
