"""Serves tests/django_project on a free loopback port: run by the project's Python, from the project's
directory, with the database environment of the test session (see the live_server fixture).

It binds port 0 (so no other process can take the port between choosing and binding it), then writes
the port it got to the file named by its one argument, and serves until it is terminated. Requests are
logged to stderr by Django's request handler.
"""
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
sys.path.insert(0, os.getcwd())

import django  # noqa: E402

django.setup()

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402


def main(port_file):
    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_wsgi_application())
    partial = port_file + ".partial"
    with open(partial, "w") as stream:
        stream.write(str(server.server_address[1]))
    os.rename(partial, port_file)  # the reader never sees half a number
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
