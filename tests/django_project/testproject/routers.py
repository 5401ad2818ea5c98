"""The router of the test project's two-database variant (OAUTHOPS_TEST_OAUTH_DB_NAME): DOT's models live on
the 'oauth' database, with testapp's (project tables that point at DOT's tokens), everything else on
'default', in the pattern of Django's multi-db documentation.

The routers have no opinion on the user model: Django then reads a user where the instance it is reached
from lives (the `instance` hint: DOT reading application.user reads the 'oauth' database's users, which
its foreign keys point at), and 'default' when there is none. The users and the other apps are migrated
on both databases; DOT's and testapp's tables only on 'oauth', although `migrate` records their migrations on 'default'
as well (with nothing created), which is what makes a check of recorded migrations alone pass falsely.
"""

OAUTH_APPS = {"oauth2_provider", "testapp"}


class OAuthRouter:
    def db_for_read(self, model, **hints):
        return "oauth" if model._meta.app_label in OAUTH_APPS else None

    def db_for_write(self, model, **hints):
        return "oauth" if model._meta.app_label in OAUTH_APPS else None

    def allow_relation(self, obj1, obj2, **hints):
        if obj1._meta.app_label in OAUTH_APPS or obj2._meta.app_label in OAUTH_APPS:
            return obj1._state.db == obj2._state.db
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label in OAUTH_APPS:
            return db == "oauth"
        return None
