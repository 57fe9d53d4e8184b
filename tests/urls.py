"""URLs of the test project: the admin (the views' read-only admin is tested through it)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
