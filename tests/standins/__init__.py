"""Local stand-ins for Snowflake (fakesnow), BigQuery (bqemulator) and Postgres; see README.md."""
