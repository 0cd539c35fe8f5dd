"""AST passes, one function per module, named after that function."""
