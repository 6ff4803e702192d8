"""Settings for the HLS Learning Partner, read from environment variables only.

See ``.env.example`` for every variable. Bad values stop the process at start with a message
that names the variable (``hls.lib.env.ConfigError``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.utils.translation import gettext_lazy as _

from hls.lib.env import (
    ConfigError,
    check_url,
    email_settings,
    env_bool,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("HLS_DATA_DIR") or BASE_DIR / ".data")

DEBUG = env_bool("DJANGO_DEBUG", default=False)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key is None:
        if not DEBUG:
            raise ConfigError(
                "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false: "
                'generate one with: python -c "import secrets; print(secrets.token_urlsafe(50))"'
            )
        # Local development: one random key per checkout, kept so sessions survive restarts.
        path = DATA_DIR / "secret-key"
        if not path.exists():
            DATA_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(50))
            path.chmod(0o600)
        return path.read_text().strip()
    if not DEBUG and (len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure")):
        raise ConfigError(
            "DJANGO_SECRET_KEY is too weak for production: use at least 50 random characters"
        )
    return key


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    raise ConfigError(
        "DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is false, for example 'hls.example.org'"
    )

# Without DJANGO_SITE_URL, production assumes https on the first allowed host, so emails never
# point at localhost.
_default_site = "http://localhost:8000"
if not DEBUG and ALLOWED_HOSTS[0] != "*" and not ALLOWED_HOSTS[0].startswith("."):
    _default_site = f"https://{ALLOWED_HOSTS[0]}"
SITE_URL = check_url(
    "DJANGO_SITE_URL", env_str("DJANGO_SITE_URL") or _default_site, {"http", "https"}
).rstrip("/")
_site = urlsplit(SITE_URL)
if _site.path or _site.query or _site.fragment:
    raise ConfigError(f"DJANGO_SITE_URL must be an origin without a path, not {SITE_URL!r}")
CSRF_TRUSTED_ORIGINS = [f"{_site.scheme}://{_site.netloc}"]

# --- Database -------------------------------------------------------------------------------

_database_url = env_str("DATABASE_URL")
if _database_url is None:
    from hls import embedded

    _database_url = embedded.postgres_url(DATA_DIR)
check_url("DATABASE_URL", _database_url, {"postgres", "postgresql"})
try:
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url, conn_max_age=env_int("DJANGO_DB_CONN_MAX_AGE", 60, minimum=0)
        )
    }
except ValueError as exc:
    raise ConfigError(f"DATABASE_URL could not be read: {exc}") from None
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["OPTIONS"] = {"connect_timeout": 5}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, results, cache ----------------------------------------------------------

_redis_url = env_str("REDIS_URL")
if _redis_url is None:
    from hls import embedded

    _redis_url = embedded.redis_url(DATA_DIR)
REDIS_URL = check_url("REDIS_URL", _redis_url, {"redis", "rediss", "unix"})


def _celery_url(url: str) -> str:
    """kombu and Celery spell a unix-socket Redis as redis+socket:// with a virtual_host."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    query = parse_qs(parts.query)
    db = query.pop("db", ["0"])[0]
    return f"redis+socket://{parts.path}?{urlencode({'virtual_host': db})}"


CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "hls",
        "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
}

CELERY_BROKER_URL = _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = _celery_url(REDIS_URL)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Time limits stay well below the broker's visibility timeout, so a task that overruns is
# killed before Redis hands it to a second worker.
# max_retries 0: a publish fails at once when Redis is down (the outbox sweeper retries later),
# so no request waits on the broker.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "max_retries": 0,
    "socket_connect_timeout": 1,  # an unreachable host fails fast too, not only a stopped one
}
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
WORKER_HEARTBEAT_SECONDS = 10
WORKER_HEARTBEAT_STALE_SECONDS = 45

# --- Email ----------------------------------------------------------------------------------

globals().update(
    email_settings(
        "EMAIL_URL", env_str("EMAIL_URL") or ("console://" if DEBUG else "smtp://localhost:25")
    )
)
DEFAULT_FROM_EMAIL = (
    env_str("DJANGO_DEFAULT_FROM_EMAIL") or f"HLS Learning Partner <noreply@{_site.hostname}>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
PASSWORD_RESET_TIMEOUT = 60 * 60 * 24  # one day
# The email ledger (engagements/mail.py): batch size per job, backoff after a temporary SMTP
# failure, tries before giving up, when a claim by a lost worker is stale, and how long a new
# row waits for its own job before the sweeper sends it.
HLS_EMAIL_BATCH = env_int("HLS_EMAIL_BATCH", 100)
HLS_EMAIL_RETRY_SECONDS = env_int("HLS_EMAIL_RETRY_SECONDS", 30)
HLS_EMAIL_MAX_ATTEMPTS = env_int("HLS_EMAIL_MAX_ATTEMPTS", 8)
HLS_EMAIL_CLAIM_STALE_SECONDS = env_int("HLS_EMAIL_CLAIM_STALE_SECONDS", 300)
HLS_EMAIL_PENDING_GRACE_SECONDS = env_int("HLS_EMAIL_PENDING_GRACE_SECONDS", 600)

# --- Exports (engagements/exports.py) -------------------------------------------------------

# Where export files are written (and deleted once expired); how long a download link works;
# the most rows (cycles, reflections and adaptations together) one export may hold.
HLS_EXPORT_DIR = Path(env_str("HLS_EXPORT_DIR") or DATA_DIR / "exports")
HLS_EXPORT_HOURS = env_int("HLS_EXPORT_HOURS", 24, minimum=1)
HLS_EXPORT_MAX_ROWS = env_int("HLS_EXPORT_MAX_ROWS", 200_000, minimum=1)

# --- Applications ---------------------------------------------------------------------------

INSTALLED_APPS = [
    "whitenoise.runserver_nostatic",
    "hls.apps.HLSAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "csp",
    "hls.apps.HlsConfig",
    "engagements",
    "cases",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "hls.middleware.NullOriginMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "engagements.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "hls.middleware.PrivatePagesMiddleware",
    "hls.middleware.ResidentPagesMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hls.urls"
WSGI_APPLICATION = "hls.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "hls.context_processors.site",
                "hls.context_processors.language_next",
            ],
            "builtins": ["django.templatetags.i18n", "engagements.templatetags.people"],
        },
    }
]

# --- Accounts and two-factor ----------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
OTP_TOTP_ISSUER = "HLS Learning Partner"
# Two-factor is always required for facilitators and admins. It may be relaxed only for local
# development, and only while DEBUG is on; the demo keeps it on and prints the TOTP secrets.
TWO_FACTOR_REQUIRED = True if not DEBUG else env_bool("HLS_TWO_FACTOR_REQUIRED", default=True)

# Lockout after repeated failures for the same username from the same address.
AXES_FAILURE_LIMIT = env_int("HLS_LOGIN_FAILURE_LIMIT", 5, minimum=1)
# Reflections one resident link accepts per minute (a flood guard, not a quota).
RESIDENT_SUBMIT_LIMIT = env_int("HLS_RESIDENT_SUBMIT_LIMIT", 300, minimum=1)
AXES_COOLOFF_TIME = 0.25  # hours: fifteen minutes
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "hls.lib.http.client_ip"

SESSION_COOKIE_AGE = 60 * 60 * 12
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "hls.views.csrf_failure"

# --- Security headers -----------------------------------------------------------------------

SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Behind a TLS proxy: trust X-Forwarded-Proto, and only the X-Forwarded-For entry that the
# last DJANGO_PROXY_COUNT proxies appended (hls.lib.http.client_ip).
BEHIND_PROXY = env_bool("DJANGO_BEHIND_PROXY", False)
PROXY_COUNT = env_int("DJANGO_PROXY_COUNT", 1, minimum=1)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("DJANGO_HSTS_SECONDS", 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

# --- Language and time ----------------------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("uk", _("Ukrainian"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_AGE = 60 * 60 * 24 * 365
LANGUAGE_COOKIE_SECURE = not DEBUG
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
USE_I18N = True
TIME_ZONE = "Europe/London"
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# In development WhiteNoise serves straight from the app and static folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Logging --------------------------------------------------------------------------------

LOG_FORMAT = env_str("DJANGO_LOG_FORMAT") or ("text" if DEBUG else "json")
if LOG_FORMAT not in {"text", "json"}:
    raise ConfigError(f"DJANGO_LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOG_LEVEL = (env_str("DJANGO_LOG_LEVEL") or "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
    raise ConfigError(f"DJANGO_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "filters": {"redact_tokens": {"()": "hls.lib.logging.RedactTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # runserver's access log, through the same redacting handler.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
