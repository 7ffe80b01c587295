from django.urls import path, re_path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from signing.api import views
from signing.api.schema import CachedSpectacularAPIView

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("runs", views.RunViewSet, basename="run")
router.register("keys", views.KeyViewSet, basename="key")
router.register("records", views.RecordViewSet, basename="record")

urlpatterns = [
    path("auth/token/", views.ObtainExpiringToken.as_view(), name="api-token"),
    path("verify/", views.VerifyView.as_view(), name="api-verify"),
    path("schema/", CachedSpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    *router.urls,
    # Last: whatever else is under /api/ answers a JSON 404 (APPEND_SLASH's redirect would
    # lose a POST's body anyway; the message names the missing slash).
    re_path(r"^(?P<path>.*)$", views.not_found, name=views.NOT_FOUND),
]
