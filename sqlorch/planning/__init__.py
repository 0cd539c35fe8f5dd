"""Deciding per model what to do (pure), and the statements that do it."""
