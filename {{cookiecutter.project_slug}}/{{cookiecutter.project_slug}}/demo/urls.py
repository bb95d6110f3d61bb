from django.urls import path

from . import views

urlpatterns = [
    path("io", views.io_bound, name="demo-io"),
    path("io-async", views.io_async, name="demo-io-async"),
    path("upstream", views.upstream, name="demo-upstream"),
    path("db", views.db_bound, name="demo-db"),
    path("cpu", views.cpu_bound, name="demo-cpu"),
    path("leak", views.leak, name="demo-leak"),
    path("error", views.error, name="demo-error"),
]
