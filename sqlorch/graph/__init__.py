"""The dependency graph and node selection."""
