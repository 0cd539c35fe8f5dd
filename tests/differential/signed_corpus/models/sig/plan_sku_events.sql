-- description: a three-way comma join whose three sides change (items updated, users updated and deleted, events appended), one join on two columns: every delta branch reads the other sides through key filters
SELECT u.plan, i.sku, count(*) AS n, sum(e.amount) AS revenue, sum(i.qty) AS qty
FROM raw.items i, raw.users u, raw.events e
WHERE i.order_id = u.user_id AND e.user_id = u.user_id AND e.country = u.country AND i.qty > 0
GROUP BY u.plan, i.sku
