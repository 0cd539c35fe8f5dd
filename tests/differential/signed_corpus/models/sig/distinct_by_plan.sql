-- description: COUNT/SUM(DISTINCT) over a join whose both sides change: users moving between plans carry their distinct user ids and amounts; NULL countries are not counted
SELECT u.plan, count(*) AS events, count(DISTINCT e.user_id) AS users, count(DISTINCT e.country) AS countries,
       sum(DISTINCT e.amount) AS distinct_amounts
FROM raw.events e
JOIN raw.users u ON e.user_id = u.user_id
GROUP BY u.plan
