"""Local fakes of the outside world (WhatsApp Cloud API, Graph Send API, TikTok Business
Messaging, Anthropic Messages API) that speak their real wire formats."""

from tistis_sandbox.app import create_app
from tistis_sandbox.client import AsyncSandboxClient, SandboxClient
from tistis_sandbox.server import running_sandbox

__all__ = ["AsyncSandboxClient", "SandboxClient", "create_app", "running_sandbox"]
