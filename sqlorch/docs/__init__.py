"""`sqlorch docs`: a static site of the project (DAG, models, columns, lineage, runs) that
opens from file:// with every asset inside its folder."""
