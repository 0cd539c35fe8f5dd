-- description: the quantity per sku kept; the skus holding a quarter of all of it
WITH q AS (SELECT sku, SUM(qty) AS total FROM raw.items GROUP BY sku)
SELECT q.sku, q.total
FROM q
WHERE q.total * 4 >= (SELECT SUM(total) FROM q)
