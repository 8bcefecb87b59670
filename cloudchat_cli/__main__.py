"""Run the CLI with ``python -m cloudchat_cli``."""

from cloudchat_cli.entry import main

if __name__ == "__main__":
    main()
