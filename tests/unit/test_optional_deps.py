"""prometheus-client and opentelemetry-api are optional: `import sdk` works without
them, and asking for metrics without the package is a clear error at the call."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sdk import Client, Worker, workflow

pytestmark = pytest.mark.anyio


@workflow.defn
class Nothing:
    @workflow.run
    async def run(self) -> None:
        return None


def test_sdk_imports_without_the_optional_packages() -> None:
    code = (
        "import sys\n"
        "for name in ('prometheus_client', 'opentelemetry'):\n"
        "    sys.modules[name] = None  # import fails as if not installed\n"
        "import sdk, sdk.interceptor, sdk.testing, sdk.worker.worker, sdk.client.client\n"
        "assert sys.modules.get('prometheus_client') is None\n"
        "try:\n"
        "    import sdk.contrib.opentelemetry\n"
        "except ImportError as exc:\n"
        "    assert \"pip install 'redurable[otel]'\" in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('imported without opentelemetry')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


async def test_metrics_without_prometheus_client_is_a_clear_error(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'redurable\[metrics\]'"):
        Worker(fake_client, task_queue="q", workflows=[Nothing], metrics_port=0)
