-- description: chain level 4 (user_stats -> plan_stats, joined with a changing dimension)
SELECT COALESCE(u.plan, 'unknown') AS plan, count(*) AS users, sum(s.total) AS total, sum(s.active_days) AS days
FROM mart.user_stats s
LEFT JOIN raw.users u ON s.user_id = u.user_id
GROUP BY COALESCE(u.plan, 'unknown')
