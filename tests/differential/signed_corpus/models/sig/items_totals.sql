-- description: a one-row aggregate: its row stays at zero rows
SELECT count(*) AS lines, sum(qty) AS qty, avg(qty) AS avg_qty, sum(price) AS total, max(price) AS dearest
FROM raw.items
