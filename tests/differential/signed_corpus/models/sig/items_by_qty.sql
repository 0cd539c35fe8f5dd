-- description: rows move between groups on every qty update; groups vanish when their last row leaves
SELECT qty, count(*) AS lines, sum(price) AS total, max(price) AS dearest
FROM raw.items
GROUP BY qty
