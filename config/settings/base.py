"""Settings shared by every environment.

Every value an operator may change is read once, here, through one ``environ.Env``.
The embedded default (no variables at all) is SQLite, the in-memory channel layer and
the built-in development LLM; production refuses to start without its secrets.
"""

import os
from pathlib import Path

import environ

from config.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# The .env file fills in what the environment does not set. PARLOR_DOTENV names another
# file; set and empty, no file is read (the test settings set it so: tests use their own
# database, cache, channel layer and LLM, never the ones a .env names).
if DOTENV := os.environ.get("PARLOR_DOTENV", str(BASE_DIR / ".env")):
    environ.Env.read_env(DOTENV, overwrite=False)

SECRET_KEY = env("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_htmx",
    "accounts",
    "models_app",
    "chat",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "config.middleware.RefuseWhileDrainingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_config(url: str, *, pool: bool) -> dict:
    """Return Django's DATABASES entry for ``url``, tuned for this app's workload."""
    config = env.db_url_config(url)
    engine = config["ENGINE"]
    options = config.setdefault("OPTIONS", {})
    if engine == "django.db.backends.sqlite3":
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at
        # BEGIN so concurrent writers queue on the busy timeout instead of failing.
        options.setdefault("timeout", 30)
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        # Connections persist per thread (opening one costs more than most statements).
        config.setdefault("CONN_MAX_AGE", None)
        config.setdefault("CONN_HEALTH_CHECKS", True)
    elif engine == "django.db.backends.postgresql" and pool:
        # Under ASGI every sync_to_async thread would otherwise open its own connection.
        options.setdefault(
            "pool",
            {"min_size": 2, "max_size": env.int("DB_POOL_MAX_SIZE", default=20), "timeout": 10},
        )
    if engine == "django.db.backends.postgresql":
        # With the pool, psycopg checks a connection before handing it out; without it,
        # Django checks a persistent one before each request. Either way a connection
        # PostgreSQL closed (a restart, a failover, a killed backend) costs no request.
        config.setdefault("CONN_HEALTH_CHECKS", True)
        # The reply path's statements are prepared once per connection
        # (config/statements.py); Django's own cursors never prepare. DB_PREPARE=false
        # behind a pooler that cannot keep prepared statements (PgBouncer's transaction
        # mode before 1.21).
        if env.bool("DB_PREPARE", default=True):
            options.setdefault("prepare_threshold", 5)
    return config


DATABASE_URL = env("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": database_config(DATABASE_URL, pool=env.bool("DB_POOL", default=True))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Every sign-in door (page, API token, admin) counts failures here (accounts/throttling.py).
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
LOGIN_URL = "login"
# Failed sign-ins allowed per username (any address) and per address (any username).
LOGIN_ATTEMPTS = env("LOGIN_ATTEMPTS", default="10/5min")
LOGIN_ATTEMPTS_PER_ADDRESS = env("LOGIN_ATTEMPTS_PER_ADDRESS", default="30/5min")
# Sign-up tries allowed per address and per username asked for.
SIGNUP_ATTEMPTS = env("SIGNUP_ATTEMPTS", default="10/h")
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic puts the files nginx serves under /static/ (deploy/nginx).
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# The cache holds sign-in failure counts: shared through Redis when there is one.
if REDIS_URL := env("REDIS_URL", default=""):
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Channels: in-memory by default; Redis when REDIS_URL is set, so that several server
# processes share the streams of one generation.
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py's default 5 s read timeout equals channels-redis' 5 s blocking pop,
            # so an idle socket's receive could time out and kill its consumer.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
else:
    # One process: the streaming engine fans out in memory and never uses the layer;
    # /readyz still round-trips a message through it.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The LLM (SPEC 5). Without LLM_BASE_URL the built-in development LLM is used.
LLM_BASE_URL = env("LLM_BASE_URL", default="")
OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
LLM_MODEL = env("LLM_MODEL", default="parlor-dev")
LLM_TITLE_MODEL = env("LLM_TITLE_MODEL", default="") or LLM_MODEL
LLM_SUMMARY_MODEL = env("LLM_SUMMARY_MODEL", default="") or LLM_MODEL
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=60.0)
# The LLMs people may pick (GET /api/llms/, the chat header's picker), comma-separated;
# empty: every model the provider lists (GET /v1/models, cached LLM_MODELS_CACHE seconds).
LLM_MODELS = env.list("LLM_MODELS", default=[])
LLM_MODELS_CACHE = env.int("LLM_MODELS_CACHE", default=300)

# Threads that run the streaming path's database work (chat/streaming/db.py); keep it at
# or below DB_POOL_MAX_SIZE, which Django's sync views share.
STREAMING_DB_THREADS = env.int("STREAMING_DB_THREADS", default=8)
# How often (seconds) a server process's threads may take the interpreter from one
# another (sys.setswitchinterval; Python's default is 0.005). The event loop and the
# database threads hand it back and forth on every query: at 5 ms a query that waits
# behind a busy loop holds its transaction (and the user's row lock) that much longer.
# 0.5 ms: 50 clients at once see their first token ~15 % sooner, and CPU per reply drops.
# 0 leaves Python's default.
STREAMING_SWITCH_INTERVAL = env.float("STREAMING_SWITCH_INTERVAL", default=0.0005)

# Conversations (SPEC 3).
CONTEXT_MESSAGES = env.int("CONTEXT_MESSAGES", default=30)
SUMMARY_THRESHOLD = env.int("SUMMARY_THRESHOLD", default=60)
# Messages that leave the recent window before the rolling summary is refreshed: 20 (ten
# question-and-reply turns) makes one summary call per ten replies.
SUMMARY_EVERY = env.int("SUMMARY_EVERY", default=20)
# The most a reply's context may hold (estimated at four characters a token); the
# newest messages are kept.
CONTEXT_TOKEN_BUDGET = env.int("CONTEXT_TOKEN_BUDGET", default=24_000)
MAX_MESSAGE_CHARS = env.int("MAX_MESSAGE_CHARS", default=32_000)
# Seconds a temporary conversation is kept after its last message (SPEC 4.6); the
# streaming engine's sweep and `manage.py cleanup_empty_sessions` delete it then.
TEMPORARY_CHAT_TTL = env.int("TEMPORARY_CHAT_TTL", default=24 * 3600)
# Tokens (prompt + completion of the user's replies) each user may spend a day, UTC;
# empty: no limit. A user's own quota_tokens_per_day (set by staff in the admin) wins.
_quota = env("QUOTA_TOKENS_PER_DAY", default="").strip()
QUOTA_TOKENS_PER_DAY = int(_quota) if _quota else None

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Bearer first: its WWW-Authenticate header makes unauthenticated calls 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "chat.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PARSER_CLASSES": ["chat.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "chat.api.errors.exception_handler",
    # ?format= is the export format (markdown|json), not a renderer override.
    "URL_FORMAT_OVERRIDE": None,
}
# Per-user rate limits of the REST API ("<count>/<second|minute|hour|day>").
THROTTLE_MESSAGES = env("THROTTLE_MESSAGES", default="30/min")
THROTTLE_TOKENS = env("THROTTLE_TOKENS", default="10/min")
# Seconds between sweeps ending replies a dead process left streaming (any live process
# ends them within the 6 s lease plus this); 0 disables the sweep.
RECOVERY_INTERVAL = env.float("PARLOR_RECOVERY_INTERVAL", default=2.0)
# Seconds a process told to stop (SIGTERM) lets its replies in flight finish; what is not
# finished by then is saved and ended as interrupted, and its readers told.
SHUTDOWN_GRACE = env.float("SHUTDOWN_GRACE", default=25.0)
SPECTACULAR_SETTINGS = {
    "TITLE": "Parlor API",
    "DESCRIPTION": "Conversations with an AI assistant: general, per model, per run.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from the drf-spectacular-sidecar package: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "MessageStatusEnum": "chat.models.Message.Status",
        "RatingEnum": "chat.models.Feedback.Rating",
        "RunStatusEnum": "models_app.models.Run.Status",
        "OrderTypeEnum": "models_app.services.ORDER_TYPES",
    },
    # POST /api/chat/stream is a plain async view outside DRF: this hook adds its
    # documentation (chat/api/schema.py) to the endpoints the schema is made of.
    "PREPROCESSING_HOOKS": ["chat.api.schema.add_chat_stream"],
}

# Logs (config/logs.py): "text" for people, "json" for one object per line; both carry
# the request id. At INFO they name ids, never message text, titles, prompts or tokens.
LOG_FORMAT = env("LOG_FORMAT", default="text")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env("LOG_LEVEL", default="INFO"))

# The bearer token GET /metrics requires (chat/views_metrics.py); empty: /metrics answers
# 403 to everyone.
METRICS_TOKEN = env("METRICS_TOKEN", default="")

API_TOKEN_TTL_SECONDS = env.int("API_TOKEN_TTL_SECONDS", default=7 * 24 * 3600)
