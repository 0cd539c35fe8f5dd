"""The control plane's decisions, pure: durations and freshness targets, cron schedules,
and which models are due at a given instant. Nothing here reads a clock or a warehouse;
``sqlorch.api_run`` passes the time and the state in."""
