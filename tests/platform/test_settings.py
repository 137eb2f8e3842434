"""Production settings: no default secret, refuse to start without one, and pass `check --deploy`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def run_check(env_overrides: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECRET_KEY", "AGGREGATOR_ENCRYPTION", "EMAIL_", "AGGREGATOR_BASE_URL"))
    }
    env["DJANGO_SETTINGS_MODULE"] = "aggregator.settings.production"
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION_ENV = {
    "SECRET_KEY": "x7#" + "k2!pQ9zR" * 8,
    "AGGREGATOR_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aggregator"),
    "ALLOWED_HOSTS": "aggregator.example.com",
    "EMAIL_URL": "smtp+tls://mailer:not-a-real-password@smtp.example.com:587",
    "AGGREGATOR_BASE_URL": "https://aggregator.example.com",
}


def test_production_settings_pass_the_deploy_check_without_warnings():
    result = run_check(PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = run_check({**PRODUCTION_ENV, "SECRET_KEY": None})
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr


def test_production_refuses_to_start_without_encryption_keys():
    result = run_check({**PRODUCTION_ENV, "AGGREGATOR_ENCRYPTION_KEYS": None})
    assert result.returncode != 0
    assert "AGGREGATOR_ENCRYPTION_KEYS" in result.stderr


def test_secret_key_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(PRODUCTION_ENV["SECRET_KEY"] + "\n")
    result = run_check({**PRODUCTION_ENV, "SECRET_KEY": None, "SECRET_KEY_FILE": str(secret_file)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_mail_server():
    result = run_check({**PRODUCTION_ENV, "EMAIL_URL": None})
    assert result.returncode != 0
    assert "EMAIL_URL (or EMAIL_URL_FILE) must be set in production" in result.stderr


def test_production_refuses_to_start_without_its_public_address():
    result = run_check({**PRODUCTION_ENV, "AGGREGATOR_BASE_URL": None})
    assert result.returncode != 0
    assert "AGGREGATOR_BASE_URL must be set in production" in result.stderr


def test_the_mail_server_url_can_come_from_a_file(tmp_path):
    url_file = tmp_path / "email_url"
    url_file.write_text(PRODUCTION_ENV["EMAIL_URL"] + "\n")
    result = run_check({**PRODUCTION_ENV, "EMAIL_URL": None, "EMAIL_URL_FILE": str(url_file)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_email_settings_come_from_email_url(monkeypatch):
    from aggregator.settings.base import BASE_DIR, email_settings

    for name in ("EMAIL_URL", "EMAIL_URL_FILE", "EMAIL_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    assert email_settings("consolemail://") == {
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"
    }

    monkeypatch.setenv("EMAIL_URL", "smtp+tls://mailer:p%40ss@smtp.example.com:587")
    assert email_settings("consolemail://") == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "mailer",
        "EMAIL_HOST_PASSWORD": "p@ss",
        "EMAIL_USE_TLS": True,
    }

    # A file path is relative to the project directory unless the URL has a fourth slash.
    monkeypatch.setenv("EMAIL_URL", "filemail:///var/mail")
    assert email_settings("consolemail://")["EMAIL_FILE_PATH"] == BASE_DIR / "var" / "mail"
    monkeypatch.setenv("EMAIL_URL", "filemail:////srv/mail")
    assert email_settings("consolemail://")["EMAIL_FILE_PATH"] == Path("/srv/mail")

    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.dummy.EmailBackend")
    assert email_settings("consolemail://")["EMAIL_BACKEND"] == "django.core.mail.backends.dummy.EmailBackend"
