-- description: EXISTS subquery
SELECT u.user_id, u.plan, u.country
FROM raw.users u
WHERE EXISTS (SELECT 1 FROM raw.events e WHERE e.user_id = u.user_id)
