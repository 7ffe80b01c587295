from django.urls import path

from signing.web import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/progress.json", views.run_progress_json, name="run-progress"),
    path("runs/<int:run_id>/charts/", views.run_charts, name="run-charts"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/stop/", views.run_stop, name="run-stop"),
    path("keys/", views.keys, name="keys"),
    path("keys/<str:kid>.pem", views.key_public_pem, name="key-pem"),
]
