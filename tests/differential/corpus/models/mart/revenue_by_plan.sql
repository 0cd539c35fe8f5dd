-- description: join where the dimension side changes (revenue by plan)
SELECT u.plan, count(*) AS events, sum(e.amount) AS revenue
FROM raw.events e
JOIN raw.users u ON e.user_id = u.user_id
GROUP BY u.plan
