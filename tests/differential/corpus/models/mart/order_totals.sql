-- description: items aggregated per order (in-place updates and hard deletes)
SELECT order_id, count(*) AS lines, sum(qty) AS qty, sum(qty * price) AS total, max(updated_at) AS last_update
FROM raw.items
GROUP BY order_id
