-- materialized: view
SELECT
    c.customer_id,
    c.customer_name,
    c.country,
    count(o.order_id) AS orders,
    coalesce(sum(o.amount), 0) AS lifetime_value
FROM staging.stg_customers AS c
LEFT JOIN intermediate.int_orders_enriched AS o ON o.customer_id = c.customer_id
GROUP BY c.customer_id, c.customer_name, c.country
