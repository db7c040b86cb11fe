"""URLs for the console's tests: the admin, as a site has it."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
