"""The Celery app the bot and the zone workers build from [workers]: one queue per zone,
late acknowledgements (a worker that dies leaves its message to be handed on), one
message at a time per worker slot, results in Redis, and every message signed.

Signing is Celery's "auth" serializer: the sender signs each message with the
deployment's private key, a receiver checks the signature against the certificates it
trusts and refuses anything else, so whoever holds only the broker cannot make a worker
run anything. Workers accept nothing but signed task messages, and take no remote
control commands at all (a cancel is a flag in the store, chatbot/zones/store.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from chatbot.config import WorkersConfig
from chatbot.errors import UserError
from chatbot.secrets import resolve_secret

log = logging.getLogger(__name__)

SIGNED = "auth"
PLAIN_SCHEMES = ("redis", "amqp")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def with_password(url: str, password: str | None) -> str:
    if not password:
        return url
    parts = urlsplit(url)
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(password, safe='')}@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def broker_password(cfg: WorkersConfig) -> str | None:
    return resolve_secret(cfg.extras(), "password", "workers")


def store_url(cfg: WorkersConfig) -> str:
    return with_password(cfg.store_url_without_password, broker_password(cfg))


def check_signing_files(cfg: WorkersConfig) -> None:
    for name, path in (("signing_key", cfg.signing_key), ("signing_certificate", cfg.signing_certificate)):
        if not path.expanduser().is_file():
            raise UserError(f"[workers] {name}: {path} not found")


def cert_store_glob(store: str) -> str:
    """A directory of trusted certificates means its *.pem files."""
    path = Path(store).expanduser()
    return str(path / "*.pem") if path.is_dir() else str(path)


def make_app(cfg: WorkersConfig) -> Any:
    """A Celery app for [workers], its signing in force. Celery registers the signing
    serializer for the whole process (kombu keeps one registry): one deployment per process."""
    from celery import Celery

    check_signing_files(cfg)
    password = broker_password(cfg)
    for url in {cfg.broker_url, cfg.store_url_without_password}:
        parts = urlsplit(url)
        if parts.scheme in PLAIN_SCHEMES and parts.hostname not in LOOPBACK:
            log.warning("[workers] %s://%s is not encrypted: use %ss:// in production", parts.scheme,
                        parts.hostname, parts.scheme)
    app = Celery("netbot", broker=with_password(cfg.broker_url, password),
                 backend=with_password(cfg.store_url_without_password, password), set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # acknowledged when done: a worker killed mid-task leaves it to the broker
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a busy worker does not sit on messages a free one could take
        broker_transport_options={"visibility_timeout": cfg.visibility_timeout},
        result_backend_transport_options={"visibility_timeout": cfg.visibility_timeout},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        redis_socket_connect_timeout=3,
        redis_socket_timeout=10,
        result_expires=3600,
        task_serializer=SIGNED,
        result_serializer=SIGNED,
        accept_content=[SIGNED],
        result_accept_content=[SIGNED],
        security_key=str(cfg.signing_key.expanduser()),
        security_certificate=str(cfg.signing_certificate.expanduser()),
        security_cert_store=cert_store_glob(cfg.certificate_store),
        security_digest="sha256",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        # No remote control: whoever holds the broker could otherwise shut workers down or
        # point them at other queues. A cancel travels as a flag the task polls instead.
        worker_enable_remote_control=False,
    )
    try:
        # JSON stays registered for kombu's own use; the task consumer accepts "auth" only.
        app.setup_security(allowed_serializers=["json"])  # "auth" itself is registered after this
    except Exception as err:  # celery's SecurityError / ImproperlyConfigured, or a bad PEM
        raise UserError(f"[workers] signing: {err}") from None
    return app
