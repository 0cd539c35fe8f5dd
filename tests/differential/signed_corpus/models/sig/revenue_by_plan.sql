-- description: an aggregate over a join whose both sides change (events appended, users updated and deleted)
SELECT u.plan, count(*) AS events, sum(e.amount) AS revenue, max(e.amount) AS biggest, count(e.country) AS with_country
FROM raw.events e
JOIN raw.users u ON e.user_id = u.user_id
GROUP BY u.plan
