"""URLs of the demo: the admin, where the views' caches can be browsed (read-only)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
