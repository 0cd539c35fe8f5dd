-- description: a derived table over a three-way join (items, users, fx), grouped outside it
SELECT country, count(*) AS lines, sum(amount) AS amount
FROM (
    SELECT u.country, i.qty * i.price AS amount
    FROM raw.items i
    JOIN raw.users u ON i.order_id = u.user_id
    JOIN raw.fx f ON f.country = u.country
) AS t
GROUP BY country
