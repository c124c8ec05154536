"""Pictures: sample grids and plots."""
