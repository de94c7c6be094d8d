"""An ASGI app that answers every request with a JSON object of its method, path, HTTP version
and headers. Served by hypercorn, which accepts HTTP/1.1, h2c prior knowledge and the HTTP/1.1
`Upgrade: h2c` handshake: the upstream an h2c smuggling attempt would reach."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"{" + b",".join(
        [
            b'"method":"%s"' % scope["method"].encode(),
            b'"path":"%s"' % scope["path"].encode("utf-8", "replace"),
            b'"http_version":"%s"' % scope["http_version"].encode(),
            b'"headers":[%s]'
            % b",".join(b'"%s"' % name for name, _ in scope["headers"]),
        ]
    ) + b"}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
