-- description: group by a column from a joined dimension (rows move between groups)
SELECT u.country AS user_country, e.country AS event_country, count(*) AS events, sum(e.amount) AS revenue
FROM raw.events e
JOIN raw.users u ON e.user_id = u.user_id
GROUP BY u.country, e.country
