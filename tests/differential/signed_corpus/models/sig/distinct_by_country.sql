-- description: NULL group keys (country) and DISTINCT over an expression; users inserted, updated and deleted
SELECT country, count(DISTINCT plan) AS plans, count(DISTINCT user_id % 4) AS buckets
FROM raw.users
GROUP BY country
