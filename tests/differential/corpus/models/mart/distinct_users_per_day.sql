-- description: count(DISTINCT)
SELECT CAST(ts AS DATE) AS day, count(DISTINCT user_id) AS users, count(*) AS events
FROM raw.events
GROUP BY 1
