-- description: IN subquery against a changing dimension
SELECT event_id, user_id, amount
FROM raw.events
WHERE user_id IN (SELECT user_id FROM raw.users WHERE plan = 'pro')
