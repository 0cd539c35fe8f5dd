-- description: COUNT/SUM/AVG/MIN/MAX per group over updates and deletes (rows moving between skus are updates of qty/price only)
SELECT sku, count(*) AS lines, count(qty) AS with_qty, sum(qty) AS qty, sum(qty * price) AS total,
       avg(qty) AS avg_qty, min(price) AS cheapest, max(updated_at) AS last_update
FROM raw.items
GROUP BY sku
