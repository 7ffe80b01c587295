"""URL routes: the dashboard, login, the admin, the API, the JWKS, metrics and health."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from signing.api.views import JwksView
from signing.ops.health import healthz
from signing.ops.metrics import metrics_view

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("signing.api.urls")),
    path(".well-known/jwks.json", JwksView.as_view(), name="jwks"),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    path("", include("signing.web.urls")),
]
