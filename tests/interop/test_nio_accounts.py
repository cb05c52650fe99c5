"""Account lifecycle through matrix-nio, a real client library (not our own HTTP calls).

nio has its own habits a homeserver must accept: it sends the m.login.dummy
auth in the first /register request (no UIA session), uses the
m.id.user identifier on /login and passes the access token in the query string.
"""

import secrets

import pytest
from nio import (AsyncClient, AsyncClientConfig, LoginError, LoginResponse, LogoutResponse,
                 RegisterResponse, WhoamiError, WhoamiResponse)

pytestmark = pytest.mark.asyncio

# By default nio retries refused connections and 429s forever; a test must fail instead.
CONFIG = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=30)
PASSWORD = "correct horse battery staple"


def new_client(url: str, user: str = "") -> AsyncClient:
    return AsyncClient(url, user, config=CONFIG)


def why(resp) -> str:
    """HTTP status + nio's view of a response, for assertion messages."""
    transport = getattr(resp, "transport_response", None)
    return f"HTTP {transport.status if transport else '?'}: {resp}"


def fresh_username() -> str:
    # Unique per run: INTEROP_HOMESERVER_URL may point at a server that keeps users.
    return "nio_" + secrets.token_hex(4)


async def test_register_login_whoami_logout(homeserver_url):
    username = fresh_username()

    reg_client = new_client(homeserver_url)
    try:
        reg = await reg_client.register(username, PASSWORD, device_name="nio register")
        assert isinstance(reg, RegisterResponse), f"register failed: {why(reg)}"
        assert reg.user_id.startswith(f"@{username}:"), reg.user_id
        assert reg.access_token and reg.device_id

        client = new_client(homeserver_url, username)
        try:
            login = await client.login(PASSWORD, device_name="nio login")
            assert isinstance(login, LoginResponse), f"login failed: {why(login)}"
            assert login.user_id == reg.user_id
            assert login.access_token and login.access_token != reg.access_token
            assert login.device_id and login.device_id != reg.device_id  # a new device

            who = await client.whoami()
            assert isinstance(who, WhoamiResponse), f"whoami failed: {why(who)}"
            assert who.user_id == login.user_id
            assert who.device_id == login.device_id

            old_token = login.access_token
            out = await client.logout()
            assert isinstance(out, LogoutResponse), f"logout failed: {why(out)}"
        finally:
            await client.close()

        # nio forgets the token on logout, so replay it from a fresh client.
        replay = new_client(homeserver_url, username)
        try:
            replay.access_token = old_token
            gone = await replay.whoami()
            assert isinstance(gone, WhoamiError), f"token still valid after logout: {why(gone)}"
            assert gone.status_code == "M_UNKNOWN_TOKEN", why(gone)
            assert gone.transport_response.status == 401
        finally:
            await replay.close()

        # Logging out one device must not log out the others.
        still = await reg_client.whoami()
        assert isinstance(still, WhoamiResponse), f"registration token revoked: {why(still)}"
        assert still.device_id == reg.device_id
    finally:
        await reg_client.close()


async def test_login_wrong_password_is_forbidden(homeserver_url):
    username = fresh_username()
    reg_client = new_client(homeserver_url)
    client = new_client(homeserver_url, username)
    try:
        reg = await reg_client.register(username, PASSWORD)
        assert isinstance(reg, RegisterResponse), f"register failed: {why(reg)}"
        bad = await client.login("not the password")
        assert isinstance(bad, LoginError), f"login with a wrong password: {why(bad)}"
        assert bad.status_code == "M_FORBIDDEN", why(bad)
        assert bad.transport_response.status == 403
    finally:
        await reg_client.close()
        await client.close()
