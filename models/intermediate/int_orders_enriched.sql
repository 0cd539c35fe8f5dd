-- tags: core
SELECT
    o.order_id,
    o.order_date,
    o.status,
    o.amount,
    o.customer_id,
    c.customer_name,
    c.country
FROM staging.stg_orders AS o
LEFT JOIN staging.stg_customers AS c ON o.customer_id = c.customer_id
