-- description: SELECT DISTINCT over updatable source
SELECT DISTINCT country, plan
FROM raw.users
