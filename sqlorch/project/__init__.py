"""Loading a project: files, headers, templating, parsing, dependencies."""
