-- description: one row per order, cleaned; orders without a customer are kept
-- audits: not_null(order_id), unique(order_id), accepted_values(status, 'completed', 'returned'), expression(amount >= 0)
-- audits_warn: not_null(customer_id)
SELECT
    order_id,
    customer_id,
    CAST(order_date AS DATE) AS order_date,
    lower(status) AS status,
    CAST(amount AS DECIMAL(12, 2)) AS amount
FROM seeds.orders
WHERE status <> 'pending'
