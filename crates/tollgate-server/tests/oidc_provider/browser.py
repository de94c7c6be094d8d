"""A browser for tests/back_channel_logout.rs, standard library only: signs a user in at
node-oidc-provider through its own interaction pages (authorization code flow) and ends the
session the way a user does, on the provider's logout page.

    python3 browser.py sign-in ISSUER USER JAR      -> prints {"access_token": ..., "id_token": ...}
    python3 browser.py sign-out ISSUER JAR ID_TOKEN -> prints {"status": ...} once the provider answered

JAR is the file that keeps the user's cookies between the two commands.
"""

import http.cookiejar
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

CLIENT, SECRET = "web", "web-secret-0123456789"


class Stop(Exception):
    """Raised at the client's redirect URI: the browser would go back to the application there."""

    def __init__(self, url):
        super().__init__(url)
        self.url = url


class StopAtCallback(urllib.request.HTTPRedirectHandler):
    def __init__(self, issuer):
        self.callback = issuer + "/callback"

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if newurl.startswith(self.callback):
            raise Stop(newurl)
        # A 303 after a POST is followed with GET, as browsers do.
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def browser(issuer, jar_path, load):
    jar = http.cookiejar.LWPCookieJar(jar_path)
    if load:
        jar.load(ignore_discard=True, ignore_expires=True)
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(jar), StopAtCallback(issuer)
    )
    return opener, jar


def form(page, issuer):
    """The first form of a page: its absolute action and its hidden fields."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page)
    if not action:
        raise SystemExit("no form on the page:\n" + page[:2000])
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    return urllib.parse.urljoin(issuer + "/", action.group(1)), hidden


def post(opener, url, fields):
    data = urllib.parse.urlencode(fields).encode()
    return opener.open(urllib.request.Request(url, data=data, method="POST"))


def sign_in(issuer, user, jar_path):
    opener, jar = browser(issuer, jar_path, load=False)
    query = urllib.parse.urlencode({
        "client_id": CLIENT,
        "response_type": "code",
        "redirect_uri": issuer + "/callback",
        "scope": "openid orders",
        "resource": "urn:orders",
        "state": "s",
        "nonce": "n",
    })
    try:
        page = opener.open(f"{issuer}/auth?{query}").read().decode()
        # The login page, then the consent page; each posts to the interaction and redirects.
        for _ in range(3):
            action, fields = form(page, issuer)
            if fields.get("prompt") == "login":
                fields.update({"login": user, "password": "any"})
            page = post(opener, action, fields).read().decode()
        raise SystemExit("the provider never redirected back with a code:\n" + page[:2000])
    except Stop as stop:
        code = urllib.parse.parse_qs(urllib.parse.urlparse(stop.url).query)["code"][0]
    jar.save(ignore_discard=True, ignore_expires=True)
    token = urllib.request.Request(
        issuer + "/token",
        data=urllib.parse.urlencode({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": issuer + "/callback",
            "resource": "urn:orders",
        }).encode(),
        method="POST",
    )
    token.add_header("Authorization", "Basic " + __import__("base64").b64encode(
        f"{CLIENT}:{SECRET}".encode()).decode())
    answer = json.load(urllib.request.urlopen(token))
    print(json.dumps({"access_token": answer["access_token"], "id_token": answer["id_token"]}))


def sign_out(issuer, jar_path, id_token):
    opener, _ = browser(issuer, jar_path, load=True)
    query = urllib.parse.urlencode({
        "id_token_hint": id_token,
        "post_logout_redirect_uri": issuer + "/logged-out",
    })
    page = opener.open(f"{issuer}/session/end?{query}").read().decode()
    action, fields = form(page, issuer)
    fields["logout"] = "yes"
    try:
        post(opener, action, fields)
        status = 200
    except urllib.error.HTTPError as e:
        # The post-logout redirect URI is not served by anyone: the provider has answered.
        status = e.code
    print(json.dumps({"status": status}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"sign-in": sign_in, "sign-out": sign_out}[command](*args)
