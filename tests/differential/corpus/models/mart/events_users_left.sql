-- description: left join events-users (users may be missing or deleted)
SELECT e.event_id, e.user_id, e.amount, COALESCE(u.plan, 'none') AS plan, u.country AS user_country
FROM raw.events e
LEFT JOIN raw.users u ON e.user_id = u.user_id
