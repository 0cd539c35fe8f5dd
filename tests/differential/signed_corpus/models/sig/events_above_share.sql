-- description: a correlated scalar subquery compared with a column (TPC-H Q17, with SUM): a derived table of one row per user, joined
SELECT u.country, count(*) AS events, sum(e.amount) AS amount
FROM raw.events e
JOIN raw.users u ON e.user_id = u.user_id
WHERE e.amount * 4 > (SELECT sum(e2.amount) FROM raw.events e2 WHERE e2.user_id = u.user_id)
GROUP BY u.country
