"""The protected resource of the served project."""
from django.http import JsonResponse
from oauth2_provider.views.generic import ProtectedResourceView


class HelloView(ProtectedResourceView):
    """DOT's own protection (ProtectedResourceView refuses a missing, unknown, expired or revoked token);
    the answer names the token's user, application and scopes so a test can tell whose token it was."""

    def verify_request(self, request):
        valid, oauthlib_request = super().verify_request(request)
        self.oauthlib_request = oauthlib_request
        return valid, oauthlib_request

    def get(self, request, *args, **kwargs):
        token = self.oauthlib_request.access_token
        user = token.user
        return JsonResponse(
            {
                "user": None if user is None else user.get_username(),
                "client_id": token.application.client_id,
                "scopes": sorted(token.scope.split()),
            }
        )
