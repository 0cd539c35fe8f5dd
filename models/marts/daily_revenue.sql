-- tags: core, finance
-- audits: unique(order_date, country), row_count(min => 1), expression(revenue >= 0)
SELECT
    order_date,
    country,
    count(*) AS orders,
    sum(amount) FILTER (WHERE status = 'completed') AS revenue
FROM intermediate.int_orders_enriched
GROUP BY order_date, country
