-- description: IN over an ungrouped subquery (TPC-H Q20's outer IN): the distinct user ids of pro users, users changing plan
SELECT e.country, count(*) AS n, sum(e.amount) AS amount
FROM raw.events e
WHERE e.user_id IN (SELECT u.user_id FROM raw.users u WHERE u.plan = 'pro')
GROUP BY e.country
