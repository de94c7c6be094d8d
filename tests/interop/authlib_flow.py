#!/usr/bin/env python3
"""Interop check: drive tollgate's /connect/* endpoints with authlib's OAuth2Session.

Target from the environment: TOLLGATE_URL (e.g. http://127.0.0.1:8080), CLIENT_ID,
CLIENT_SECRET, USERNAME, PASSWORD. Prints "interop ok" and exits 0, or says what failed and
exits 1.

    pip install -r tests/interop/requirements.txt
    python3 tests/interop/authlib_flow.py
"""

import os
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def env(name):
    value = os.environ.get(name)
    if not value:
        raise Failed(f"environment variable {name} is not set")
    return value


def main():
    base = env("TOLLGATE_URL").rstrip("/")
    client_id, client_secret = env("CLIENT_ID"), env("CLIENT_SECRET")
    username, password = env("USERNAME"), env("PASSWORD")
    token_url = f"{base}/connect/token"
    introspect_url = f"{base}/connect/introspect"
    revoke_url = f"{base}/connect/revocation"

    client = OAuth2Session(
        client_id,
        client_secret,
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_basic",
        default_timeout=10,
    )
    # authlib hides the raw refresh response (and copies the old refresh_token into the result
    # when the server sends none), so keep the raw response to check status and body ourselves.
    last_refresh = {}

    def keep_refresh_response(resp):
        last_refresh["resp"] = resp
        return resp

    client.register_compliance_hook("refresh_token_response", keep_refresh_response)

    # a. password grant
    tok = client.fetch_token(
        token_url, username=username, password=password, grant_type="password"
    )
    check(tok.get("access_token"), f"a: no access_token in {dict(tok)}")
    check(tok.get("token_type") == "Bearer", f"a: token_type is {tok.get('token_type')!r}, not 'Bearer'")
    expires_in = tok.get("expires_in")
    check(isinstance(expires_in, int) and expires_in > 0, f"a: expires_in is {expires_in!r}")
    check(tok.get("refresh_token"), f"a: no refresh_token in {dict(tok)}")
    access1, refresh1 = tok["access_token"], tok["refresh_token"]

    # b. introspect the access token
    resp = client.introspect_token(introspect_url, token=access1)
    check(resp.status_code == 200, f"b: introspect returned HTTP {resp.status_code}: {resp.text}")
    info = resp.json()
    check(info.get("active") is True, f"b: token not active: {info}")
    check(info.get("client_id") == client_id, f"b: client_id is {info.get('client_id')!r}, want {client_id!r}")

    # c. refresh: new access token and a rotated refresh token
    tok = client.refresh_token(token_url, refresh_token=refresh1)
    raw = last_refresh["resp"].json()
    check(raw.get("refresh_token"), f"c: refresh response has no refresh_token: {raw}")
    access2, refresh2 = tok["access_token"], tok["refresh_token"]
    check(access2 and access2 != access1, "c: refresh did not return a new access token")
    check(refresh2 != refresh1, "c: refresh token was not rotated (same value returned)")

    # d. revoke the new access token, then introspection must say exactly {"active": false}
    resp = client.revoke_token(revoke_url, token=access2, token_type_hint="access_token")
    check(resp.status_code == 200, f"d: revoke access token returned HTTP {resp.status_code}: {resp.text}")
    resp = client.introspect_token(introspect_url, token=access2)
    check(resp.status_code == 200, f"d: introspect returned HTTP {resp.status_code}: {resp.text}")
    check(resp.json() == {"active": False}, f'd: want {{"active": false}} after revocation, got {resp.text}')

    # e. revoke the refresh token, then refreshing with it must fail with 400 invalid_grant
    resp = client.revoke_token(revoke_url, token=refresh2, token_type_hint="refresh_token")
    check(resp.status_code == 200, f"e: revoke refresh token returned HTTP {resp.status_code}: {resp.text}")
    last_refresh.clear()
    try:
        client.refresh_token(token_url, refresh_token=refresh2)
        raise Failed("e: refresh with a revoked refresh token succeeded")
    except OAuthError as err:
        status = last_refresh["resp"].status_code
        check(status == 400, f"e: want HTTP 400, got {status}: {last_refresh['resp'].text}")
        check(err.error == "invalid_grant", f"e: want error invalid_grant, got {err.error!r}")

    print("interop ok")


if __name__ == "__main__":
    try:
        main()
    except Failed as err:
        print(f"interop FAILED: {err}", file=sys.stderr)
        sys.exit(1)
    except OAuthError as err:
        print(f"interop FAILED: unexpected OAuth error {err.error!r}: {err.description}", file=sys.stderr)
        sys.exit(1)
    except (requests.RequestException, ValueError) as err:
        print(f"interop FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
