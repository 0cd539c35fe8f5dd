-- description: window over a joined relation (partition column comes from the dimension)
SELECT e.event_id, u.plan,
       rank() OVER (PARTITION BY u.plan ORDER BY e.amount DESC, e.event_id) AS rank_in_plan
FROM raw.events e
JOIN raw.users u ON e.user_id = u.user_id
