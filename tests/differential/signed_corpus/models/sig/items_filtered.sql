-- description: FILTER and CASE inside the aggregates, an expression over aggregates, HAVING on the maintained groups
SELECT order_id % 3 AS bucket,
       sum(price) FILTER (WHERE qty > 2) AS big_total,
       count(*) FILTER (WHERE qty = 0) AS empty_lines,
       sum(CASE WHEN sku IN ('a', 'b') THEN qty ELSE 0 END) AS ab_qty,
       sum(qty * price) / nullif(sum(qty), 0) AS weighted_price
FROM raw.items
GROUP BY order_id % 3
HAVING count(*) > 2 AND min(qty) < 4
