-- description: subquery in FROM with a filter on an aggregate
SELECT user_id, total
FROM (SELECT user_id, sum(amount) AS total FROM raw.events GROUP BY user_id) t
WHERE total > 100
