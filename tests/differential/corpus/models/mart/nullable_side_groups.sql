-- description: groups keyed by a column of a LEFT JOIN's nullable derived table (the key filter must stay above the join)
SELECT x.user_id AS paying_user, count(*) AS events, sum(e.amount) AS revenue
FROM raw.events e
LEFT JOIN (SELECT user_id, plan FROM raw.users WHERE plan <> 'free') x ON e.user_id = x.user_id
GROUP BY x.user_id
