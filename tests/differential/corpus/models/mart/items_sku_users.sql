-- description: GROUP BY over a model (stg_events) joined with items via a scalar key, plus CASE
SELECT i.sku, CASE WHEN i.qty >= 3 THEN 'bulk' ELSE 'single' END AS size, count(*) AS lines, sum(i.price) AS price
FROM raw.items i
GROUP BY i.sku, CASE WHEN i.qty >= 3 THEN 'bulk' ELSE 'single' END
