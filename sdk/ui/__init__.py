"""The web UI (`redurable ui`, docs/ui.md). Needs the `ui` extra: starlette, uvicorn,
jinja2; sdk.cli.main imports this package only when the command runs."""
