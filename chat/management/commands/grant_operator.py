"""Give people the operator role (permission ``chat.operate_conversations``), or take it
back: operators see the operator queue, join users' conversations and answer in person
(SPEC 4.6). The admin's user page does the same (User permissions)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat import services


class Command(BaseCommand):
    help = "Grant (or with --revoke, take back) the operator role to the given usernames."

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="+", help="the people's usernames")
        parser.add_argument("--revoke", action="store_true", help="take the role back")

    def handle(self, *args, usernames, revoke, **options):
        users = {
            user.username: user for user in get_user_model().objects.filter(username__in=usernames)
        }
        unknown = [name for name in usernames if name not in users]
        if unknown:
            raise CommandError(f"No such user: {', '.join(unknown)}.")
        for name in usernames:
            services.operator_role_set(user=users[name], granted=not revoke)
            verb = "is no longer" if revoke else "is now"
            self.stdout.write(f"{name} {verb} an operator.")
