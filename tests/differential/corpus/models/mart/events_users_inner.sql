-- description: inner join events-users
SELECT e.event_id, e.user_id, e.amount, u.plan, u.country AS user_country
FROM raw.events e
JOIN raw.users u ON e.user_id = u.user_id
