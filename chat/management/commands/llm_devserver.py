"""Serve the built-in development LLM (SPEC 5.4) at http://HOST:PORT/v1."""

from aiohttp import web
from django.core.management.base import BaseCommand

from chat.devllm import DevConfig, DevLLM


class Command(BaseCommand):
    help = "Serve the deterministic OpenAI-compatible development LLM."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--tokens", type=int, default=60, help="Reply length in tokens.")
        parser.add_argument("--first-token-ms", type=float, default=150.0)
        parser.add_argument("--token-ms", type=float, default=15.0)

    def handle(self, *args, host, port, tokens, first_token_ms, token_ms, **options):
        if tokens < 1 or first_token_ms < 0 or token_ms < 0:
            self.stderr.write("--tokens must be >= 1 and the delays >= 0.")
            raise SystemExit(2)
        server = DevLLM(DevConfig(tokens=tokens, first_token_ms=first_token_ms, token_ms=token_ms))
        self.stdout.write(f"Development LLM on http://{host}:{port}/v1 (Ctrl+C to stop)")
        web.run_app(
            server.app,
            host=host,
            port=port,
            print=None,
            access_log=None,
            handler_cancellation=True,
            backlog=1024,
        )
