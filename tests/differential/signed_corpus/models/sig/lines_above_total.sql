-- description: an uncorrelated scalar subquery (TPC-H Q22's average, with SUM): a one-row derived table, every group touched when items change
SELECT i.sku, count(*) AS lines
FROM raw.items i
WHERE i.qty * 12 >= (SELECT sum(x.qty) FROM raw.items x WHERE x.sku <> 'd')
GROUP BY i.sku
