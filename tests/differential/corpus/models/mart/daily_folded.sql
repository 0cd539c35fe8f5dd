-- description: distributive aggregates only (COUNT/SUM/MIN/MAX, one with FILTER): appended events are folded into stored groups
SELECT date_trunc('day', ts) AS day, country,
       count(*) AS n, count(user_id) AS with_user, sum(amount) AS total,
       min(amount) AS min_amount, max(ts) AS last_ts,
       sum(amount) FILTER (WHERE user_id IS NULL) AS anonymous_total
FROM raw.events
GROUP BY date_trunc('day', ts), country
