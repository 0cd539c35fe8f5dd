-- description: filter + projection over an updatable keyed source (rows leave/enter the filter)
SELECT order_id, line, sku, qty * price AS line_total
FROM raw.items
WHERE qty > 0
