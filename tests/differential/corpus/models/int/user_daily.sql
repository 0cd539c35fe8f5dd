-- description: chain level 2 (stg_events -> user_daily)
SELECT user_id, day, count(*) AS events, sum(amount) AS total
FROM stg.stg_events
GROUP BY user_id, day
