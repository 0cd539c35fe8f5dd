"""Running a plan against a warehouse through an adapter."""
