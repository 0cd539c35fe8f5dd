-- description: COUNT(DISTINCT) with FILTER, AVG(DISTINCT), HAVING on a DISTINCT count; items updated (values and rows moving between skus) and deleted
SELECT sku, count(DISTINCT order_id) AS orders, count(DISTINCT qty) FILTER (WHERE price > 10) AS dear_qtys,
       avg(DISTINCT qty) AS avg_qty, max(price) AS dearest
FROM raw.items
GROUP BY sku
HAVING count(DISTINCT order_id) > 1
