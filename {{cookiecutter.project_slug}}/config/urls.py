"""URL routes. /healthz and /readyz are answered earlier, by {{ cookiecutter.project_slug }}.probes."""

from django.contrib import admin
{%- if cookiecutter.include_demo_endpoints %}
from django.urls import include, path
{%- else %}
from django.urls import path
{%- endif %}

urlpatterns = [
    path("admin/", admin.site.urls),
{%- if cookiecutter.include_demo_endpoints %}
    path("demo/", include("{{ cookiecutter.project_slug }}.demo.urls")),
{%- endif %}
]
