"""A WSGI app on the standard library's WSGI server (wsgiref, HTTP/1.0), as a CGI/WSGI upstream
reads a request: header names upper-cased with `-` turned into `_`, so `X-Auth-Roles` and
`X_Auth_Roles` are one variable (`HTTP_X_AUTH_ROLES`, values of both joined by a comma).

It answers every request with a JSON object of the method, the path and every `HTTP_*`
variable, and the method after Rack/Express-style method override (`X-HTTP-Method-Override` and
its kin, honoured as those frameworks do). Prints its port on the first line of stdout.
"""

import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

OVERRIDES = ("HTTP_X_HTTP_METHOD_OVERRIDE", "HTTP_X_HTTP_METHOD", "HTTP_X_METHOD_OVERRIDE")


def app(environ, start_response):
    method = environ["REQUEST_METHOD"]
    acted_on = method
    for name in OVERRIDES:
        if name in environ:
            acted_on = environ[name].upper()
            break
    body = json.dumps(
        {
            "method": method,
            "acted_on": acted_on,
            "path": environ.get("PATH_INFO", ""),
            "protocol": environ.get("SERVER_PROTOCOL", ""),
            "http": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        }
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(server.server_port, flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
