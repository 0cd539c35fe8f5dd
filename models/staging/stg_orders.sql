-- description: one row per order, cleaned; orders without a customer are kept
SELECT
    order_id,
    customer_id,
    CAST(order_date AS DATE) AS order_date,
    lower(status) AS status,
    CAST(amount AS DECIMAL(12, 2)) AS amount
FROM seeds.orders
WHERE status <> 'pending'
