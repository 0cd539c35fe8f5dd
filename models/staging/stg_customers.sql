-- audits: not_null(customer_id), unique(customer_id)
SELECT
    customer_id,
    name AS customer_name,
    upper(country) AS country,
    CAST(signup_date AS DATE) AS signup_date
FROM seeds.customers
