-- description: EXISTS and NOT EXISTS correlated by an equality AND <> (TPC-H Q21): per touched order
SELECT i.sku, count(*) AS lines
FROM raw.items i
WHERE EXISTS (SELECT 1 FROM raw.items i2 WHERE i2.order_id = i.order_id AND i2.sku <> i.sku)
  AND NOT EXISTS (
    SELECT 1 FROM raw.items i3 WHERE i3.order_id = i.order_id AND i3.sku <> i.sku AND i3.qty > 3
  )
GROUP BY i.sku
