"""Running a dbt project as it is: its project file, Jinja, schema names, profiles and tests."""
