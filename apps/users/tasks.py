"""Thin Celery tasks that call a service."""

from __future__ import annotations

import smtplib

from celery import shared_task


# It takes the address, not a user id: the request that queues it must not look the account up (an answer
# that came faster for unknown addresses would tell them apart). A mail server that is down or refuses for
# now is retried; a retry may send the link twice, which is harmless.
@shared_task(
    name="users.password_reset_send",
    ignore_result=True,
    autoretry_for=(smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, ConnectionError, TimeoutError),
    retry_backoff=10,
    retry_jitter=True,
    max_retries=5,
)
def password_reset_send_task(email: str) -> bool:
    from .services import password_reset_send

    return password_reset_send(email=email)
