"""URL routes: the admin now; the dashboard and API arrive with their issues."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
