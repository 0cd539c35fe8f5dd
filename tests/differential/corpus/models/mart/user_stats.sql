-- description: chain level 3 (user_daily -> user_stats)
SELECT user_id, count(*) AS active_days, sum(events) AS events, sum(total) AS total, max(day) AS last_day
FROM int.user_daily
GROUP BY user_id
