import logging
import os

from django.apps import AppConfig


class TestappConfig(AppConfig):
    name = "testapp"

    def ready(self):
        if os.environ.get("OAUTHOPS_TEST_NOISY_SETTINGS"):
            logging.getLogger("testapp").info("testapp ready: a log line on stdout")
