from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from engagements.demo import load_demo


class Command(BaseCommand):
    help = "Load the demo organisations and people (idempotent) and print their logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--credentials",
            type=Path,
            default=settings.DATA_DIR / "demo-credentials.json",
            help="Where demo passwords and TOTP secrets are kept (created if missing).",
        )
        parser.add_argument("--force", action="store_true", help="Load even when DEBUG is off.")
        parser.add_argument("--quiet", action="store_true", help="Load without printing logins.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "Demo data is for local runs; DJANGO_DEBUG is off. Use --force to load anyway."
            )
        logins = load_demo(options["credentials"])
        if options["quiet"]:
            return
        self.stdout.write("Demo logins (username / password):")
        for login in logins:
            self.stdout.write(f"  {login.username:<20} {login.password:<18} {login.describes}")
        two_factor = [login for login in logins if login.otpauth_uri]
        if two_factor:
            self.stdout.write(
                "\nTwo-factor is required for these accounts. Add each URI to an authenticator app "
                "(most can import a link, or type the secret= part by hand):"
            )
            for login in two_factor:
                self.stdout.write(f"  {login.username:<20} {login.otpauth_uri}")
        token = json.loads(options["credentials"].read_text()).get("resident_token")
        if token:
            self.stdout.write(
                "\nDemo resident link (open it on a phone or in a private window):\n"
                f"  {settings.SITE_URL}/r/{token}"
            )
