"""What the served project answers (tests/integration/test_live_clients.py): DOT's endpoints under /o/,
a login page for the authorization-code flow, and one resource protected by DOT."""
from django.contrib.auth.views import LoginView
from django.urls import include, path

from testproject.views import HelloView

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("api/hello/", HelloView.as_view(), name="hello"),
]
