-- description: global aggregate (one row)
SELECT count(*) AS n, sum(amount) AS total, max(ts) AS last_ts, count(DISTINCT country) AS countries
FROM raw.events
