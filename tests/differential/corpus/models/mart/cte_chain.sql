-- description: CTE chain
WITH valid AS (
    SELECT user_id, country, amount FROM raw.events WHERE user_id IS NOT NULL
), per_user AS (
    SELECT user_id, country, sum(amount) AS total, count(*) AS n FROM valid GROUP BY user_id, country
)
SELECT user_id, country, total, n, total / n AS avg_amount
FROM per_user
