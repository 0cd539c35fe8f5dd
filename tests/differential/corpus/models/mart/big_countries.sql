-- description: GROUP BY with HAVING
SELECT country, count(*) AS n, sum(amount) AS total
FROM raw.events
GROUP BY country
HAVING count(*) > 12
