"""``cloudchat webhook``: verify captured bodies, sign, trigger test events, listen live.

One module per subcommand (``webhook_verify``, ``webhook_trigger``, ``webhook_listen``,
``webhook_replay``); this one only groups them, in the order ``--help`` lists them.
"""

from __future__ import annotations

import typer

from cloudchat_cli.commands import webhook_listen, webhook_replay, webhook_trigger, webhook_verify
from cloudchat_cli.commands.webhook_listen_setup import LISTEN_EPILOG

app = typer.Typer(
    help="Verify X-CloudChat-Signature, sign and trigger test events, receive events live.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

app.command("verify", epilog=webhook_verify.VERIFY_EPILOG)(webhook_verify.verify_cmd)
app.command("sign")(webhook_verify.sign_cmd)
app.command("trigger", epilog=webhook_trigger.EPILOG)(webhook_trigger.trigger_cmd)
app.command("listen", epilog=LISTEN_EPILOG)(webhook_listen.listen_cmd)
app.command("replay", epilog=webhook_replay.REPLAY_EPILOG)(webhook_replay.replay_cmd)
