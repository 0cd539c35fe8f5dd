-- description: COALESCE keys
SELECT COALESCE(country, '??') AS country, COALESCE(user_id, -1) AS user_id, count(*) AS n
FROM raw.events
GROUP BY COALESCE(country, '??'), COALESCE(user_id, -1)
