-- description: join with the undeclared source raw.fx
SELECT e.country, sum(e.amount * f.rate) AS amount_usd, count(*) AS n
FROM raw.events e
JOIN raw.fx f ON e.country = f.country
GROUP BY e.country
