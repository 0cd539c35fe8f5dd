{#- Recompute the lifetime totals of every user with newly loaded events and
    replace their rows. -#}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='user_id') }}

with events as (
    select * from {{ ref('stg_events') }}
    {% if is_incremental() %}
    where user_id in (
        select distinct user_id
        from {{ ref('stg_events') }}
        where _loaded_at > (select max(_loaded_at_max) from {{ this }})
    )
    {% endif %}
)

select
    user_id,
    count(*) as events,
    sum(amount) as revenue,
    min(ts) as first_event_ts,
    max(ts) as last_event_ts,
    max(_loaded_at) as _loaded_at_max
from events
group by user_id
