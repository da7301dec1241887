"""The `redurable` command line (docs/cli.md); the entry point is sdk.cli.main:main."""
