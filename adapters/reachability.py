"""`chatbot check`, the chat part: one cheap authenticated call per configured server.

Matrix: `account/whoami` with the access token (with a password only, the homeserver's
`versions`: a login would create a new device at every check). Mattermost: `users/me`.
Slack: `auth.test` with the bot token. Each returns None when fine, or one line.
"""

from __future__ import annotations

from typing import Any

import requests

from adapters.matrix import MatrixConfig
from adapters.mattermost import MattermostConfig
from adapters.slack import SlackConfig

TIMEOUT = 10.0


def _get(url: str, *, verify: bool | str = True, **kwargs: Any) -> requests.Response | str:
    """The response, or why there is none (by exception type)."""
    try:
        return requests.request(kwargs.pop("method", "GET"), url, timeout=TIMEOUT, verify=verify, **kwargs)
    except requests.exceptions.SSLError:
        return f"TLS verification failed for {url}"
    except requests.exceptions.Timeout:
        return f"no answer within {TIMEOUT:g} s from {url}"
    except requests.exceptions.ConnectionError:
        return f"unreachable: {url}"


def matrix_problem(cfg: MatrixConfig) -> str | None:
    base = cfg.homeserver.rstrip("/")
    token = cfg.secret("access_token")
    if token is None:
        got = _get(f"{base}/_matrix/client/versions")
        if isinstance(got, str):
            return got
        return None if got.status_code == 200 else f"{base} is not a Matrix homeserver (HTTP {got.status_code})"
    got = _get(f"{base}/_matrix/client/v3/account/whoami", headers={"Authorization": f"Bearer {token}"})
    if isinstance(got, str):
        return got
    if got.status_code in (401, 403):
        return "the homeserver refused the access token"
    if got.status_code != 200:
        return f"whoami answered HTTP {got.status_code}"
    user = _json(got).get("user_id")
    if user != cfg.user_id:
        return f"the access token belongs to {user}, not to user_id {cfg.user_id}"
    return None


def mattermost_problem(cfg: MattermostConfig) -> str | None:
    verify: bool | str = str(cfg.ca_file.expanduser()) if cfg.ca_file else cfg.verify_tls
    got = _get(f"{cfg.url}/api/v4/users/me", verify=verify, headers={"Authorization": f"Bearer {cfg.token()}"})
    if isinstance(got, str):
        return got
    if got.status_code in (401, 403):
        return "the server refused the bot's token"
    if got.status_code != 200:
        return f"users/me answered HTTP {got.status_code}"
    return None


def slack_problem(cfg: SlackConfig) -> str | None:
    _, bot_token = cfg.tokens()
    got = _get(f"{cfg.base_url}auth.test", method="POST", headers={"Authorization": f"Bearer {bot_token}"})
    if isinstance(got, str):
        return got
    body = _json(got)
    if not body.get("ok"):
        return f"auth.test refused the bot token: {str(body.get('error') or got.status_code)[:80]}"
    return None


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
