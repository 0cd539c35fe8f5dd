{#- Models land in exactly the schema they configure (staging, marts), not
    <target schema>_<schema>, so all tools write the same relation names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
