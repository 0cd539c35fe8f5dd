-- description: UNION ALL of two keyed branches with a constant discriminator
SELECT 'event' AS kind, event_id AS id, NULL::INTEGER AS line, amount
FROM raw.events
UNION ALL
SELECT 'item' AS kind, order_id AS id, line, qty * price AS amount
FROM raw.items
