"""What can be known about models from their SQL: schemas, keys, change shapes."""
