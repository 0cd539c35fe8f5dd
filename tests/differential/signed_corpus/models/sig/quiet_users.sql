-- description: NOT EXISTS (TPC-H Q22's anti-join), per touched user: users and events both change, events with NULL users
SELECT u.plan, count(*) AS quiet, min(u.user_id) AS first_quiet
FROM raw.users u
WHERE NOT EXISTS (SELECT 1 FROM raw.events e WHERE e.user_id = u.user_id AND e.amount > 20)
GROUP BY u.plan
