{#- raw.events is append-only by _loaded_at, and every load's _loaded_at is newer
    than everything loaded before: appending the rows loaded since the newest
    _loaded_at already here is exact, and append is the cheapest strategy. -#}
{{ config(materialized='incremental', incremental_strategy='append') }}

select
    event_id,
    user_id,
    ts,
    cast(ts as date) as event_date,
    upper(coalesce(country, 'ZZ')) as country,
    cast(amount as decimal(18, 2)) as amount,
    _loaded_at
from {{ source('raw', 'events') }}
where user_id is not null
  and amount is not null
{% if is_incremental() %}
  and _loaded_at > (select max(_loaded_at) from {{ this }})
{% endif %}
