from django.apps import AppConfig
from django.core.checks import register

from . import checks


class ServiceConfig(AppConfig):
    name = "{{ cookiecutter.project_slug }}"
    verbose_name = "{{ cookiecutter.project_name }}"

    def ready(self):
        # Tagged "gunicorn": the first worker of each preset runs them at start-up too.
        register(checks.database_connections, "gunicorn")
{%- if cookiecutter.database_driver == "psycopg2" %}
        register(checks.psycopg2_wait_callback, "gunicorn")
{%- endif %}
