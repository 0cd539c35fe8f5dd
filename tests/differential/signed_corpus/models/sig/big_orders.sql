-- description: IN over a grouped subquery with HAVING (TPC-H Q18): orders move in and out of the derived table as their lines change
SELECT i.sku, count(*) AS lines, sum(i.qty) AS qty
FROM raw.items i
WHERE i.order_id IN (SELECT x.order_id FROM raw.items x GROUP BY x.order_id HAVING sum(x.qty) > 4)
GROUP BY i.sku
