"""Integrations with other libraries, each importable only with its extra installed:
`sdk.contrib.opentelemetry` (`pip install 'redurable[otel]'`)."""
