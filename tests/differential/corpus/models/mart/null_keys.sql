-- description: NULL in key columns (NULL user_id, NULL country)
SELECT user_id, country, count(*) AS n, sum(amount) AS total
FROM raw.events
GROUP BY user_id, country
