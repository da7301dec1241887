"""The client wing: connecting to a namespace, starting workflows, handles to them."""

# temporalio's names: `temporalio.client.Interceptor` / `OutboundInterceptor`.
from sdk.interceptor import ClientInterceptor as Interceptor
from sdk.interceptor import OutboundInterceptor

__all__ = ["Interceptor", "OutboundInterceptor"]
