-- tags: finance
WITH numbered AS (
    SELECT
        customer_id,
        order_id,
        order_date,
        amount,
        row_number() OVER (PARTITION BY customer_id ORDER BY order_date, order_id) AS order_number,
        sum(amount) OVER (PARTITION BY customer_id ORDER BY order_date, order_id) AS running_total
    FROM intermediate.int_orders_enriched
    WHERE status = 'completed'
)
SELECT * FROM numbered
