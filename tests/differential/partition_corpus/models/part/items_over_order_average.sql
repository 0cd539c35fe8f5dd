-- description: a row-level model reading its own FROM table in a correlated AVG: partitioned by the order, keyed by (order, line)
SELECT i.order_id, i.line, i.qty
FROM raw.items i
WHERE i.qty > (SELECT avg(x.qty) FROM raw.items x WHERE x.order_id = i.order_id)
