"""A user model whose USERNAME_FIELD is not `username`, as many projects have (log in by email).

Installed only when OAUTHOPS_TEST_CUSTOM_USER is set (see testproject.settings). It lives in an
app of its own that depends on nothing else of the project: DOT's migrations depend on the
swappable user model, and testapp depends on DOT's token models, so a user model in testapp would
make a migration cycle.
"""
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class EmailUserManager(BaseUserManager):
    def create_user(self, email, password=None):
        user = self.model(email=email)
        user.set_password(password)
        user.save(using=self._db)
        return user


class EmailUser(AbstractBaseUser):
    email = models.EmailField(unique=True)

    objects = EmailUserManager()

    USERNAME_FIELD = "email"
