-- description: a row-level model over events (NULL users among them) kept by a NOT EXISTS on users: appended events of the NULL partition are affected keys too
SELECT e.event_id, e.user_id, e.amount
FROM raw.events e
WHERE NOT EXISTS (SELECT 1 FROM raw.users u WHERE u.user_id = e.user_id AND u.plan = 'free')
