-- description: ORDER BY ... LIMIT (expected to fall back to full, still exact)
SELECT user_id, sum(amount) AS total
FROM raw.events
WHERE user_id IS NOT NULL
GROUP BY user_id
ORDER BY total DESC, user_id
LIMIT 5
