"""sqlorch's own bookkeeping, kept in the target warehouse's ``_sqlorch`` schema."""
