from django.urls import path

from . import views

urlpatterns = [
    path("io", views.io_bound, name="demo-io"),
    path("db", views.db_bound, name="demo-db"),
    path("cpu", views.cpu_bound, name="demo-cpu"),
    path("error", views.error, name="demo-error"),
]
