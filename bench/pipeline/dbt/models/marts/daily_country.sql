{#- Recompute every day that received rows since the last run (late rows
    included: the filter is on _loaded_at, not on the event time) and replace
    those days whole. _loaded_at_max is the model's own watermark. -#}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='event_date') }}

with events as (
    select * from {{ ref('stg_events') }}
    {% if is_incremental() %}
    where event_date in (
        select distinct event_date
        from {{ ref('stg_events') }}
        where _loaded_at > (select max(_loaded_at_max) from {{ this }})
    )
    {% endif %}
)

select
    event_date,
    country,
    count(*) as events,
    count(distinct user_id) as users,
    sum(amount) as revenue,
    max(_loaded_at) as _loaded_at_max
from events
group by event_date, country
