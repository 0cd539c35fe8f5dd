"""Audits: queries returning a model's bad rows, run before its new rows are published."""
