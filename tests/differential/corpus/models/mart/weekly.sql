-- description: date_trunc grouping (late rows land in old weeks)
SELECT date_trunc('week', ts) AS week, count(*) AS n, sum(amount) AS total
FROM raw.events
GROUP BY date_trunc('week', ts)
