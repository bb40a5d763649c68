"""Schemathesis hooks for scripts/api-fuzz.sh: the generated calls are authorised as the
bootstrap admin, and the token is fetched again by signing in every few seconds, so that when
the fuzzer revokes its own session (logout, "sign out everywhere", a password change) the
following operations, the stateful phase's included, are authenticated again instead of all
answering 401."""

import json
import os
import urllib.request

import schemathesis

BASE = os.environ["API_FUZZ_BASE"]
EMAIL = os.environ["API_FUZZ_EMAIL"]
PASSWORD = os.environ["API_FUZZ_PASSWORD"]


@schemathesis.auth(refresh_interval=2)
class SignInAgain:
    """Signs in as the admin; Schemathesis asks again after `refresh_interval` seconds."""

    def get(self, case, ctx):
        body = json.dumps({"email": EMAIL, "password": PASSWORD}).encode()
        request = urllib.request.Request(
            f"{BASE}/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["access_token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
