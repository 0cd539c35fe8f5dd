"""Warehouse adapters: everything sqlorch knows about one warehouse, and nothing else."""
